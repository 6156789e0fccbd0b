package vm

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

// An Image is the content of an initramfs: paths inside the guest mapped to where their bytes
// come from. Directories are created for every parent.
type Image struct {
	files     map[string]imageFile
	symlinks  map[string]string
	emptyDirs []string
}

type imageFile struct {
	src  string // host file, or "" when data is set
	data []byte
	mode os.FileMode
}

// NewImage returns an empty image.
func NewImage() *Image {
	return &Image{files: map[string]imageFile{}, symlinks: map[string]string{}}
}

// AddFile copies the host file src to dst in the guest, keeping its permission bits.
func (im *Image) AddFile(dst, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	im.files[dst] = imageFile{src: src, mode: st.Mode().Perm()}
	return nil
}

// AddData writes data to dst in the guest with permission bits mode.
func (im *Image) AddData(dst string, data []byte, mode os.FileMode) {
	im.files[dst] = imageFile{data: data, mode: mode}
}

// AddDir creates an empty directory dst in the guest (a mount point, say).
func (im *Image) AddDir(dst string) { im.emptyDirs = append(im.emptyDirs, dst) }

// AddSymlink makes dst in the guest a symbolic link to target.
func (im *Image) AddSymlink(dst, target string) { im.symlinks[dst] = target }

// Write writes the image as a gzip-compressed cpio archive (the "newc" format the kernel
// unpacks into its root file system).
func (im *Image) Write(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	a := &cpioWriter{w: zw}
	for _, d := range im.dirs() {
		a.entry(d, 0o040755, nil)
	}
	for _, p := range sortedKeys(im.symlinks) {
		a.entry(p, 0o120777, []byte(im.symlinks[p]))
	}
	for _, p := range sortedKeys(im.files) {
		f := im.files[p]
		data := f.data
		if f.src != "" {
			if data, err = os.ReadFile(f.src); err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
		}
		a.entry(p, 0o100000|uint32(f.mode), data)
	}
	a.entry("TRAILER!!!", 0, nil)
	if a.err != nil {
		return fmt.Errorf("initramfs: %w", a.err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// dirs lists every parent directory of the image's entries, parents first.
func (im *Image) dirs() []string {
	seen := map[string]bool{}
	for _, d := range im.emptyDirs {
		seen[strings.TrimPrefix(d, "/")] = true
	}
	for _, p := range append(sortedKeys(im.files), sortedKeys(im.symlinks)...) {
		for d := path.Dir(strings.TrimPrefix(p, "/")); d != "." && d != "/"; d = path.Dir(d) {
			seen[d] = true
		}
	}
	ds := sortedKeys(seen)
	slices.SortFunc(ds, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	return ds
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// cpioWriter writes "newc" entries; the first error sticks.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	err  error
	size int64
}

func (c *cpioWriter) entry(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(name, "/")
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.size += int64(n)
	c.err = err
}

// pad aligns the archive to four bytes, as newc requires after each header+name and each body.
func (c *cpioWriter) pad() {
	if r := c.size % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
