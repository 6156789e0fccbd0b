package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/troop-lb/troop/cmd/troop/internal/migrate"
)

// importVerbs convert the configurations of the tools Troop replaces; they read files, write
// files or stdout, and talk to no agent (the -address every verb takes is unused). What they
// could not carry over exactly is listed on stderr, each with its file and line; a file they
// cannot read is an error naming its line, and then nothing is written.
var importVerbs = []verb{
	{name: "import ldirectord", maxArgs: 0, flags: importTableFlags(migrate.Ldirectord, "ldirectord.cf"),
		synopsis: "Convert an ldirectord.cf into a Troop table file (HCL), listing on stderr what has no equivalent"},
	{name: "import keepalived", maxArgs: 0, flags: importTableFlags(migrate.Keepalived, "keepalived.conf"),
		synopsis: "Convert a keepalived.conf's virtual servers and VRRP VIPs into a Troop table file (HCL), listing on stderr what has no equivalent"},
	{name: "import heartbeat", maxArgs: 0, flags: importHeartbeatFlags,
		synopsis: "Propose agent files for the directors of a Heartbeat cluster (ha.cf, haresources, authkeys), with new keys"},
}

// importTableFlags declares -f and -o for a table importer.
func importTableFlags(conv func(string, []byte) (*migrate.TableResult, error), what string) func(*flag.FlagSet) action {
	return func(fs *flag.FlagSet) action {
		file := fs.String("f", "", "the `"+what+"` to convert")
		out := fs.String("o", "", "write the table to `FILE` instead of stdout")
		return func(ctx context.Context, c *call) error {
			// The verb's flag set writes to the command's stderr (verb.run sets it before calling
			// flags); the findings go there too, apart from the table on stdout.
			stderr := fs.Output()
			if *file == "" {
				return usageErrorf("-f %s is required", what)
			}
			src, err := os.ReadFile(*file)
			if err != nil {
				return err
			}
			r, err := conv(*file, src)
			if err != nil {
				return err
			}
			printFindings(stderr, r.Findings)
			if *out == "" {
				_, err = c.stdout.Write(r.HCL)
				return err
			}
			if err := os.WriteFile(*out, r.HCL, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "Wrote %s; next: troop plan -f %s\n", *out, *out)
			return nil
		}
	}
}

func importHeartbeatFlags(fs *flag.FlagSet) action {
	haCF := fs.String("ha-cf", "", "Heartbeat's `ha.cf`")
	haRes := fs.String("haresources", "", "Heartbeat's `haresources`")
	authKeys := fs.String("authkeys", "", "Heartbeat's `authkeys` (optional; its keys are never reused)")
	out := fs.String("o", "", "write one file per director into `DIR` (created; existing files are not overwritten) instead of stdout")
	return func(ctx context.Context, c *call) error {
		stderr := fs.Output() // the command's stderr, as in importTableFlags
		if *haCF == "" || *haRes == "" {
			return usageErrorf("-ha-cf and -haresources are required")
		}
		in := migrate.HeartbeatInput{HaCFName: *haCF, HaResourcesName: *haRes, AuthKeysName: *authKeys, Rand: rand.Reader}
		var err error
		if in.HaCF, err = os.ReadFile(*haCF); err != nil {
			return err
		}
		if in.HaResources, err = os.ReadFile(*haRes); err != nil {
			return err
		}
		if *authKeys != "" {
			if in.AuthKeys, err = os.ReadFile(*authKeys); err != nil {
				return err
			}
		}
		r, err := migrate.Heartbeat(in)
		if err != nil {
			return err
		}
		printFindings(stderr, r.Findings)
		if *out == "" {
			for i, f := range r.Files {
				if i > 0 {
					fmt.Fprintln(c.stdout)
				}
				fmt.Fprintf(c.stdout, "# ==> %s <==\n", f.Name)
				if _, err := c.stdout.Write(f.Content); err != nil {
					return err
				}
			}
			return nil
		}
		return writeFiles(*out, r.Files, stderr)
	}
}

// writeFiles writes files into dir, all or none: it refuses before writing anything if one
// exists (a second run would make new keys that the installed files do not share).
func writeFiles(dir string, files []migrate.File, stderr io.Writer) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f.Name)); err == nil {
			return fmt.Errorf("%s already exists: nothing written (remove it or choose another -o)", filepath.Join(dir, f.Name))
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, f := range files {
		mode := os.FileMode(0o644)
		if f.Secret {
			mode = 0o600
		}
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, f.Content, mode); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "Wrote %s\n", p)
	}
	return nil
}

// printFindings lists what was not carried over exactly.
func printFindings(w io.Writer, fs []migrate.Finding) {
	if len(fs) == 0 {
		return
	}
	fmt.Fprintf(w, "Not carried over exactly (%d):\n", len(fs))
	for _, f := range fs {
		fmt.Fprintf(w, "  %s\n", f)
	}
}
