package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Diagnostic is one problem in a configuration file and where it is.
type Diagnostic struct {
	File   string
	Line   int
	Column int
	// Message names the field path and quotes the offending key or value, e.g.
	// `service "web" real "192.0.2.21:80" weight: "70000": must be 0–65535`.
	Message string
	// Err is what the problem is, for errors.Is and errors.As: the *fsm.FieldError validation
	// returned, or fsm.ErrInvalid / fsm.ErrConflict for problems found while decoding.
	Err error
}

// Error formats the diagnostic the way compilers do, so editors can jump to it.
func (d *Diagnostic) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Column, d.Message)
}

// Unwrap exposes Err.
func (d *Diagnostic) Unwrap() error { return d.Err }

// Diagnostics is every problem found in one file, in source order. ParseTable and ParseAgent
// return it (never empty) as their error; use errors.As to get at the positions.
type Diagnostics []*Diagnostic

// Error lists the diagnostics one per line.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look into every diagnostic.
func (ds Diagnostics) Unwrap() []error {
	errs := make([]error, len(ds))
	for i, d := range ds {
		errs[i] = d
	}
	return errs
}

// add records a problem at the start of rng.
func (ds *Diagnostics) add(rng hcl.Range, err error, format string, args ...any) {
	*ds = append(*ds, &Diagnostic{
		File:    rng.Filename,
		Line:    rng.Start.Line,
		Column:  rng.Start.Column,
		Message: fmt.Sprintf(format, args...),
		Err:     err,
	})
}

// addHCL converts the parser's and the expression evaluator's diagnostics. They already say
// what and where ("Unclosed configuration block"); Detail adds the why.
func (ds *Diagnostics) addHCL(file string, hds hcl.Diagnostics, err error) {
	for _, h := range hds {
		if h.Severity != hcl.DiagError {
			continue
		}
		rng := hcl.Range{Filename: file, Start: hcl.InitialPos}
		if h.Subject != nil {
			rng = *h.Subject
		}
		msg := h.Summary
		if h.Detail != "" {
			msg += ": " + h.Detail
		}
		ds.add(rng, err, "%s", msg)
	}
}

// sorted orders the diagnostics by position, keeping the order of those at the same place, so
// the user reads them top to bottom however the decoder happened to find them.
func (ds Diagnostics) sorted() Diagnostics {
	slices.SortStableFunc(ds, func(a, b *Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return ds
}

// at formats a position for "first defined at" notes.
func at(rng hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", rng.Filename, rng.Start.Line, rng.Start.Column)
}
