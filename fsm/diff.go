package fsm

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// DiffKind says what a change does to an object.
type DiffKind string

// Kinds of difference.
const (
	DiffAdd    DiffKind = "add"
	DiffChange DiffKind = "change"
	DiffRemove DiffKind = "remove"
)

// DiffObject is the type of object a Difference is about.
type DiffObject string

// Objects of a table.
const (
	ObjectService  DiffObject = "service"
	ObjectReal     DiffObject = "real"
	ObjectVIPGroup DiffObject = "vip_group"
)

// FieldChange is one field of a changed object. Before and After are JSON values; a nil side
// means the field is unset (an absent optional part, an empty string or an empty list). An
// optional part that only one side has (check, persistence, fallback) is one change whose other
// side is the whole part as a JSON object; otherwise Field names a leaf ("check.path").
type FieldChange struct {
	// Field is the JSON path of the field within its object: "scheduler", "check.path".
	Field  string          `json:"field"`
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// Difference is one object that is added, changed or removed between two tables.
type Difference struct {
	Kind   DiffKind   `json:"kind"`
	Object DiffObject `json:"object"`
	// Name is the service's name, the real server's ID or the VIP group's name.
	Name string `json:"name"`
	// Service is the service a real server belongs to; empty for other objects.
	Service string `json:"service,omitempty"`
	// Summary describes an added or removed object: a service's kernel key, a real server's
	// weight, a VIP group's addresses.
	Summary string `json:"summary,omitempty"`
	// Changes lists the changed fields of a changed object, in the order the model declares them.
	Changes []FieldChange `json:"changes,omitempty"`
}

// Diff returns what turns table from into table to: services in name order, each followed by its
// real servers in address order, then VIP groups in name order. A service that is added or removed
// is followed by each of its real servers, added or removed with it. Both tables are normalized
// first (on copies), so defaults that were spelled out and defaults that were left out compare
// equal, and so do a nil weight and the default weight. Diff expects valid tables; it does not
// fail on invalid ones, but pairs duplicate names arbitrarily (yet deterministically).
func Diff(from, to Table) []Difference {
	a, b := diffCopy(from), diffCopy(to)
	var out []Difference
	mergeSorted(a.Services, b.Services,
		func(x, y Service) int { return strings.Compare(x.Name, y.Name) },
		func(x, y *Service) { out = diffService(out, x, y) })
	mergeSorted(a.VIPGroups, b.VIPGroups,
		func(x, y VIPGroup) int { return strings.Compare(x.Name, y.Name) },
		func(x, y *VIPGroup) { out = diffGroup(out, x, y) })
	return out
}

// FormatDiff renders differences one line per added or removed object and one line per changed
// field, as a plan shows them; it returns "" for no differences.
func FormatDiff(ds []Difference) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// String renders the difference as plan lines (more than one for a change of several fields),
// without a trailing newline:
//
//   - service "web" (tcp 192.0.2.10:80)
//     ~ service "web": scheduler "wlc" → "wrr"
//   - real "192.0.2.21:80" in "web" weight 1
func (d Difference) String() string {
	head := string(d.Object) + " " + strconv.Quote(d.Name)
	if d.Service != "" {
		head += " in " + strconv.Quote(d.Service)
	}
	switch d.Kind {
	case DiffAdd, DiffRemove:
		sign := "+ "
		if d.Kind == DiffRemove {
			sign = "- "
		}
		if d.Summary == "" {
			return sign + head
		}
		if d.Object == ObjectReal {
			return sign + head + " " + d.Summary
		}
		return sign + head + " (" + d.Summary + ")"
	}
	lines := make([]string, len(d.Changes))
	for i, c := range d.Changes {
		lines[i] = fmt.Sprintf("~ %s: %s %s → %s", head, c.Field, renderValue(c.Before), renderValue(c.After))
	}
	return strings.Join(lines, "\n")
}

func renderValue(v json.RawMessage) string {
	if v == nil {
		return "(unset)"
	}
	return string(v)
}

// diffCopy returns a normalized deep copy of t with every real server's weight spelled out.
func diffCopy(t Table) Table {
	c := Table{Services: make([]Service, len(t.Services)), VIPGroups: make([]VIPGroup, len(t.VIPGroups))}
	for i := range t.Services {
		c.Services[i] = cloneService(&t.Services[i])
	}
	for i := range t.VIPGroups {
		c.VIPGroups[i] = cloneGroup(&t.VIPGroups[i])
	}
	NormalizeTable(&c)
	for i := range c.Services {
		for j := range c.Services[i].Reals {
			w := c.Services[i].Reals[j].EffectiveWeight()
			c.Services[i].Reals[j].Weight = &w
		}
	}
	return c
}

// mergeSorted walks two slices sorted by cmp and calls pair for every element of either,
// with nil for the side that lacks it.
func mergeSorted[T any](a, b []T, cmp func(x, y T) int, pair func(x, y *T)) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && cmp(a[i], b[j]) < 0):
			pair(&a[i], nil)
			i++
		case i == len(a) || cmp(a[i], b[j]) > 0:
			pair(nil, &b[j])
			j++
		default:
			pair(&a[i], &b[j])
			i, j = i+1, j+1
		}
	}
}

func diffService(out []Difference, a, b *Service) []Difference {
	switch {
	case a == nil:
		out = append(out, Difference{Kind: DiffAdd, Object: ObjectService, Name: b.Name, Summary: b.Key()})
		for i := range b.Reals {
			out = append(out, realDifference(DiffAdd, b.Name, &b.Reals[i]))
		}
		return out
	case b == nil:
		out = append(out, Difference{Kind: DiffRemove, Object: ObjectService, Name: a.Name, Summary: a.Key()})
		for i := range a.Reals {
			out = append(out, realDifference(DiffRemove, a.Name, &a.Reals[i]))
		}
		return out
	}
	if ch := fieldChanges(a, b, "name", "reals"); len(ch) > 0 {
		out = append(out, Difference{Kind: DiffChange, Object: ObjectService, Name: b.Name, Changes: ch})
	}
	mergeSorted(a.Reals, b.Reals, compareReal, func(x, y *Real) {
		switch {
		case x == nil:
			out = append(out, realDifference(DiffAdd, b.Name, y))
		case y == nil:
			out = append(out, realDifference(DiffRemove, a.Name, x))
		default:
			if ch := fieldChanges(x, y, "address", "port"); len(ch) > 0 {
				out = append(out, Difference{Kind: DiffChange, Object: ObjectReal, Name: y.ID(), Service: b.Name, Changes: ch})
			}
		}
	})
	return out
}

func realDifference(kind DiffKind, service string, r *Real) Difference {
	summary := "weight " + strconv.Itoa(r.EffectiveWeight())
	if r.Forwarding != "" {
		summary += " forwarding " + string(r.Forwarding)
	}
	if r.Admin != "" && r.Admin != Enabled {
		summary += " admin " + string(r.Admin)
	}
	return Difference{Kind: kind, Object: ObjectReal, Name: r.ID(), Service: service, Summary: summary}
}

func diffGroup(out []Difference, a, b *VIPGroup) []Difference {
	summary := func(g *VIPGroup) string {
		vips := make([]string, len(g.VIPs))
		for i, p := range g.VIPs {
			vips[i] = p.String()
		}
		s := strings.Join(vips, ", ")
		if g.Interface != "" {
			s = g.Interface + ": " + s
		}
		return s
	}
	switch {
	case a == nil:
		return append(out, Difference{Kind: DiffAdd, Object: ObjectVIPGroup, Name: b.Name, Summary: summary(b)})
	case b == nil:
		return append(out, Difference{Kind: DiffRemove, Object: ObjectVIPGroup, Name: a.Name, Summary: summary(a)})
	}
	if ch := fieldChanges(a, b, "name"); len(ch) > 0 {
		out = append(out, Difference{Kind: DiffChange, Object: ObjectVIPGroup, Name: b.Name, Changes: ch})
	}
	return out
}

// fieldChanges compares two values of the same struct type field by field, skipping the named
// top-level fields. Walking the struct by reflection keeps the diff complete when the model grows.
func fieldChanges[T any](a, b *T, skip ...string) []FieldChange {
	return compareStruct(nil, "", reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), skip)
}

func compareStruct(out []FieldChange, prefix string, a, b reflect.Value, skip []string) []FieldChange {
	t := a.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "-" || slices.Contains(skip, name) {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if prefix != "" {
			name = prefix + "." + name
		}
		out = compareValue(out, name, a.Field(i), b.Field(i))
	}
	return out
}

// compareValue descends into structs that both sides have, so that a change names the field
// that changed ("check.path"); an optional part that only one side has (a check, persistence)
// is one change of the whole part, shown as a JSON object.
func compareValue(out []FieldChange, path string, a, b reflect.Value) []FieldChange {
	if a.Kind() == reflect.Pointer {
		if a.IsNil() || b.IsNil() {
			return appendChange(out, path, a, b)
		}
		a, b = a.Elem(), b.Elem()
	}
	if a.Kind() == reflect.Struct && !a.Type().Implements(jsonMarshaler) && !a.Type().Implements(textMarshaler) {
		return compareStruct(out, path, a, b, nil)
	}
	return appendChange(out, path, a, b)
}

func appendChange(out []FieldChange, path string, a, b reflect.Value) []FieldChange {
	before, after := jsonValue(a), jsonValue(b)
	if bytes.Equal(before, after) {
		return out
	}
	return append(out, FieldChange{Field: path, Before: before, After: after})
}

// jsonValue encodes v for a plan; it is nil for what a plan shows as unset: a nil pointer, an
// empty string or an empty list.
func jsonValue(v reflect.Value) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v.Interface()); err != nil {
		// The model's types all encode; show the failure rather than hide a difference.
		return json.RawMessage(strconv.Quote(err.Error()))
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	switch string(b) {
	case `""`, "null", "[]":
		return nil
	}
	return b
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)
