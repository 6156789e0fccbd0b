package vm

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// cpioEntry is one entry read back from a newc archive.
type cpioEntry struct {
	name string
	mode uint32
	data string
}

// readNewc parses a newc archive as the kernel does: 110-byte hex headers, the name, padding to
// four bytes, the body, padding.
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header at %d field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, b[off:off+6])
		}
		mode, size, nameLen := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+nameLen-1])
		if b[off+110+nameLen-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		body := align(off + 110 + nameLen)
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, cpioEntry{name: name, mode: mode, data: string(b[body : body+size])})
		off = align(body + size)
	}
}

func TestImageIsANewcArchiveTheKernelCanUnpack(t *testing.T) {
	src := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	im := NewImage()
	if err := im.AddFile("/usr/sbin/prog", src); err != nil {
		t.Fatal(err)
	}
	im.AddData("/etc/troop-vm/job", []byte("odd length"), 0o644)
	im.AddSymlink("/bin/sh", "busybox")
	im.AddDir("/proc")
	var gz bytes.Buffer
	if err := im.Write(&gz); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	entries := readNewc(t, raw)
	var names []string
	byName := map[string]cpioEntry{}
	for _, e := range entries {
		names = append(names, e.name)
		byName[e.name] = e
	}
	// Parents come before what they hold, whatever the order things were added in.
	for _, pair := range [][2]string{{"usr", "usr/sbin"}, {"usr/sbin", "usr/sbin/prog"}, {"etc/troop-vm", "etc/troop-vm/job"}, {"bin", "bin/sh"}} {
		i, j := slices.Index(names, pair[0]), slices.Index(names, pair[1])
		if i < 0 || j < 0 || i > j {
			t.Errorf("%s at %d, %s at %d in %v", pair[0], i, pair[1], j, names)
		}
	}
	for name, want := range map[string]cpioEntry{
		"proc":             {mode: 0o040755},
		"usr/sbin/prog":    {mode: 0o100755, data: "#!/bin/sh\necho hi\n"},
		"etc/troop-vm/job": {mode: 0o100644, data: "odd length"},
		"bin/sh":           {mode: 0o120777, data: "busybox"},
	} {
		got, ok := byName[name]
		if !ok || got.mode != want.mode || got.data != want.data {
			t.Errorf("%s: got %+v (present %v), want mode %o data %q", name, got, ok, want.mode, want.data)
		}
	}
}

func TestParseTestOutput(t *testing.T) {
	console := "troop-vm: up 6.1.0\r\n" +
		"=== RUN   TestA\r\n" +
		"    a_test.go:10: hello\r\n" +
		"=== RUN   TestA/sub\r\n" +
		"    --- FAIL: TestA/sub (0.10s)\r\n" +
		"--- FAIL: TestA (1.00s)\r\n" +
		"--- PASS: TestAB (0.00s)\r\n" + // a name sharing TestA's prefix: not TestA's verdict
		"=== RUN   TestB\r\n" +
		"--- SKIP: TestB (0.00s)\r\n" +
		"=== RUN   TestC\r\n" +
		"panic: test timed out after 12m0s\r\n"
	got := ParseTestOutput(console)
	want := []struct{ name, status string }{{"TestA", "FAIL"}, {"TestB", "SKIP"}, {"TestC", ""}}
	if len(got) != len(want) {
		t.Fatalf("got %d results: %+v", len(got), got)
	}
	for i, w := range want {
		if got[i].Name != w.name || got[i].Status != w.status {
			t.Errorf("result %d: %s %q, want %s %q", i, got[i].Name, got[i].Status, w.name, w.status)
		}
	}
	if !slices.Contains(got[0].Output, "    a_test.go:10: hello") {
		t.Errorf("TestA's output lacks its log line: %q", got[0].Output)
	}
	if !slices.Contains(got[2].Output, "panic: test timed out after 12m0s") {
		t.Errorf("TestC's output lacks the panic: %q", got[2].Output)
	}
}
