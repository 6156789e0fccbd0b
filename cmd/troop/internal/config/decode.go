package config

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/troop-lb/troop/fsm"
)

// decoder walks HCL native-syntax bodies against a schema. It collects every problem instead of
// stopping at the first, and remembers where each block and attribute was, keyed by the same
// field path fsm.FieldError uses (`service "web" real "192.0.2.21:80" weight`), so that errors
// found later by validation can be pointed back at the line that caused them.
type decoder struct {
	file  string
	src   []byte
	diags Diagnostics
	// at maps a field path to the start of the key, block or list element it names.
	at map[string]hcl.Range
}

// parse reads src as HCL native syntax. It returns nil for the body if the file does not parse;
// the syntax errors are then in d.diags.
func parse(filename string, src []byte) (*decoder, *hclsyntax.Body) {
	d := &decoder{file: filename, src: src, at: map[string]hcl.Range{}}
	f, hds := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	d.diags.addHCL(filename, hds, fsm.ErrInvalid)
	if hds.HasErrors() {
		return d, nil
	}
	// The root path "" points at the top of the file: where "node_id: is required" belongs.
	d.at[""] = hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
	return d, f.Body.(*hclsyntax.Body)
}

// schema is what one block body may contain.
type schema struct {
	attrs  map[string]setter
	blocks map[string]blockSpec
}

// blockSpec is a nested block kind: the names of its labels (for the message when the count is
// wrong) and the function that decodes one block of that kind.
type blockSpec struct {
	labels []string
	decode func(b *hclsyntax.Block)
}

// body decodes b, whose field path is path, against s: every attribute through its setter in
// source order, every nested block through its spec, and a diagnostic for anything else.
func (d *decoder) body(b *hclsyntax.Body, path string, s schema) {
	attrs := make([]*hclsyntax.Attribute, 0, len(b.Attributes))
	for _, a := range b.Attributes {
		attrs = append(attrs, a)
	}
	slices.SortFunc(attrs, func(x, y *hclsyntax.Attribute) int { return x.SrcRange.Start.Byte - y.SrcRange.Start.Byte })
	for _, a := range attrs {
		set, ok := s.attrs[a.Name]
		if !ok {
			d.unknown(a.NameRange, path, "key", a.Name, s)
			continue
		}
		d.attribute(a, join(path, a.Name), set)
	}
	for _, blk := range b.Blocks {
		spec, ok := s.blocks[blk.Type]
		if !ok {
			d.unknown(blk.TypeRange, path, "block", blk.Type, s)
			continue
		}
		if len(blk.Labels) != len(spec.labels) {
			d.labelCount(blk, path, spec)
			continue
		}
		spec.decode(blk)
	}
}

// unknown reports a key or block the schema does not have. Using a block where a key belongs
// (or the reverse) gets its own message, since the name is right and only the shape is wrong;
// otherwise a close known name is suggested.
func (d *decoder) unknown(rng hcl.Range, path, kind, name string, s schema) {
	where := prefix(path)
	if _, isBlock := s.blocks[name]; isBlock && kind == "key" {
		d.diags.add(rng, fsm.ErrInvalid, "%s%q is a block, not a key: write %s { ... }", where, name, name)
		return
	}
	if _, isAttr := s.attrs[name]; isAttr && kind == "block" {
		d.diags.add(rng, fsm.ErrInvalid, "%s%q is a key, not a block: write %s = ...", where, name, name)
		return
	}
	msg := where + "unknown " + kind + " " + strconv.Quote(name)
	if near := suggest(name, s); near != "" {
		msg += "; did you mean " + strconv.Quote(near) + "?"
	}
	d.diags.add(rng, fsm.ErrInvalid, "%s", msg)
}

// suggest returns the known name closest to a misspelt one, if one is close enough to be a typo.
func suggest(name string, s schema) string {
	best, bestDist := "", 3
	for _, known := range slices.Concat(mapKeys(s.attrs), mapKeys(s.blocks)) {
		if dist := levenshtein.Distance(name, known, nil); dist < bestDist || (dist == bestDist && known < best) {
			best, bestDist = known, dist
		}
	}
	return best
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func (d *decoder) labelCount(blk *hclsyntax.Block, path string, spec blockSpec) {
	where := prefix(path)
	switch {
	case len(spec.labels) == 0:
		d.diags.add(blk.LabelRanges[0], fsm.ErrInvalid, "%sblock %q takes no label, got %q", where, blk.Type, blk.Labels[0])
	case len(blk.Labels) == 0:
		d.diags.add(blk.TypeRange, fsm.ErrInvalid, "%sblock %q needs a label: %s %q { ... }", where, blk.Type, blk.Type, spec.labels[0])
	default:
		d.diags.add(blk.LabelRanges[len(spec.labels)], fsm.ErrInvalid, "%sblock %q takes one label (%s), got %q", where, blk.Type, spec.labels[0], blk.Labels[len(spec.labels)])
	}
}

// attribute evaluates one attribute and hands the value to its setter. null means "not set", as
// elsewhere in HCL.
func (d *decoder) attribute(a *hclsyntax.Attribute, field string, set setter) {
	d.at[field] = a.SrcRange
	if e := nonLiteral(a.Expr); e != nil {
		d.diags.add(e.Range(), fsm.ErrInvalid, "%s: %s: must be a literal string, number, bool or list; expressions are not evaluated",
			field, strconv.Quote(d.source(e)))
		return
	}
	v, hds := a.Expr.Value(nil)
	if hds.HasErrors() {
		d.diags.addHCL(d.file, hds, fsm.ErrInvalid)
		return
	}
	if v.IsNull() {
		return
	}
	elems := d.elements(a.Expr, field)
	if bad := set(v); bad != nil {
		rng, text := a.SrcRange, d.display(v, a.Expr)
		if bad.elem >= 0 && bad.elem < len(elems) {
			rng, text = elems[bad.elem].Range(), d.display(v.Index(cty.NumberIntVal(int64(bad.elem))), elems[bad.elem])
		}
		d.diags.add(rng, fsm.ErrInvalid, "%s: %s: %s", field, strconv.Quote(text), bad.reason)
	}
}

// nonLiteral returns the first part of expr that is not a literal value, or nil. Configuration
// files are data, not programs: with no variables or functions there is nothing an expression
// could say that a literal cannot, and evaluating arbitrary arithmetic or templates lets a file
// make the parser format a number with a hundred million digits.
func nonLiteral(expr hclsyntax.Expression) hclsyntax.Expression {
	switch e := expr.(type) {
	case *hclsyntax.LiteralValueExpr: // numbers, true, false, null
		return nil
	case *hclsyntax.TemplateExpr: // "a string", or a heredoc, without interpolation
		for _, p := range e.Parts {
			if _, ok := p.(*hclsyntax.LiteralValueExpr); !ok {
				return e
			}
		}
		return nil
	case *hclsyntax.TupleConsExpr:
		for _, x := range e.Exprs {
			if bad := nonLiteral(x); bad != nil {
				return bad
			}
		}
		return nil
	case *hclsyntax.UnaryOpExpr: // -1
		if _, ok := e.Val.(*hclsyntax.LiteralValueExpr); ok && e.Op == hclsyntax.OpNegate {
			return nil
		}
	}
	return expr
}

// elements returns the element expressions of a list written as [a, b, ...] and records where
// each string element is, under the path `field "value"`, because validation names a bad
// element by its value (`vip_group "front" vips: "192.0.2.10": is listed twice`). A repeated
// element keeps the last position: "listed twice" is about the second one.
func (d *decoder) elements(expr hclsyntax.Expression, field string) []hclsyntax.Expression {
	tuple, ok := expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		return nil
	}
	for _, e := range tuple.Exprs {
		v, hds := e.Value(nil)
		if !hds.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
			d.at[field+" "+strconv.Quote(v.AsString())] = e.Range()
		}
	}
	return tuple.Exprs
}

// display renders a value for a message: a string as itself (the message quotes it), anything
// else as the user wrote it, so 70000 reads "70000" and not "7e+04".
func (d *decoder) display(v cty.Value, expr hclsyntax.Expression) string {
	if v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
		return v.AsString()
	}
	return d.source(expr)
}

// source is an expression as the user wrote it, without the quotes of a quoted string, which
// the message adds back.
func (d *decoder) source(expr hclsyntax.Expression) string {
	s := strings.TrimSpace(string(expr.Range().SliceBytes(d.src)))
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return s
}

// define claims path for the block blk and reports false, with a diagnostic, if an earlier block
// already has it: two services named "web", two check blocks in one service.
func (d *decoder) define(path string, blk *hclsyntax.Block) bool {
	if first, dup := d.at[path]; dup {
		d.diags.add(blk.TypeRange, fsm.ErrConflict, "%s: is defined twice, first at %s", path, at(first))
		return false
	}
	d.at[path] = blk.TypeRange
	return true
}

// locate returns where the field a validation error names was written. It tries, in order: the
// element or labelled block the value names (`service "web" real` + "192.0.2.21:80"); a block's
// own name (`service name` + "web" is the block `service "web"`); the field itself; then each
// enclosing block, so an error about a missing field lands on the block that lacks it.
func (d *decoder) locate(field, value string) hcl.Range {
	var candidates []string
	if value != "" {
		candidates = append(candidates, join(field, strconv.Quote(value)))
		if kind, ok := strings.CutSuffix(field, " name"); ok {
			candidates = append(candidates, join(kind, strconv.Quote(value)))
		}
	}
	for p := field; p != ""; p = parent(p) {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "")
	for _, c := range candidates {
		if rng, ok := d.at[c]; ok {
			return rng
		}
	}
	return hcl.Range{Filename: d.file, Start: hcl.InitialPos}
}

// fail records a validation error at the place its field path names.
func (d *decoder) fail(err error) {
	var fe *fsm.FieldError
	if errors.As(err, &fe) {
		d.diags.add(d.locate(fe.Field, fe.Value), err, "%s", fe.Error())
		return
	}
	d.diags.add(d.locate("", ""), err, "%s", err.Error())
}

// result returns the diagnostics as an error, or nil if there are none.
func (d *decoder) result() error {
	if len(d.diags) == 0 {
		return nil
	}
	return d.diags.sorted()
}

// parent drops the last word of a field path: `service "web" check` for `service "web" check type`.
// Names and IDs in paths have no spaces (fsm's name rule, addresses), so words split cleanly.
func parent(path string) string {
	i := strings.LastIndexByte(path, ' ')
	if i < 0 {
		return ""
	}
	return path[:i]
}

// prefix is path as the start of a message about something inside it.
func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// join appends a name to a field path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + " " + name
}
