package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Request body limits. A table or a snapshot of 10,000 services with 10 real servers each is
// about 20 MiB of JSON.
const (
	smallBodyLimit = 1 << 20
	largeBodyLimit = 64 << 20
)

// readBody reads the whole request body, refusing more than limit bytes (413).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		return nil, badRequest("", "", "read request body: %v", err)
	}
	return body, nil
}

// decodeBody reads the request body and decodes it strictly into v. An empty body is an error
// unless optional is set, in which case v is left as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, optional bool) error {
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return badRequest("", "", "request body is empty: expected a JSON object")
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes exactly one JSON value into v, refusing unknown fields and trailing data.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(body, reflect.TypeOf(v), err)
	}
	if off := dec.InputOffset(); len(bytes.TrimSpace(body[off:])) > 0 {
		line, col := position(body, off)
		return badRequest("", "", "request body: unexpected data after the JSON value at line %d, column %d (offset %d)", line, col, off)
	}
	return nil
}

// jsonError turns a failure to decode body into a value of type t into a 400 that names where:
// the line, column and offset of a syntax error, or the path and value of a field that does not
// fit (encoding/json names neither for values its unmarshalers reject, so the body is walked).
func jsonError(body []byte, t reflect.Type, err error) *Error {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		line, col := position(body, syntax.Offset)
		return badRequest("", "", "request body: invalid JSON at line %d, column %d (offset %d): %v", line, col, syntax.Offset, syntax)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest("", "", "request body: JSON ends early, at offset %d", len(body))
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&doc) == nil {
		if e := locate(doc, t, ""); e != nil {
			return e
		}
	}
	return badRequest("", "", "request body: %v", err)
}

// position converts a byte offset into a 1-based line and column.
func position(body []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(body)))
	before := body[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// locate walks a generically decoded document alongside the Go type it was meant for and
// returns a 400 for the first (in key order) unknown field or value that does not decode, or nil.
func locate(doc any, t reflect.Type, path string) *Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if doc == nil {
		return nil
	}
	custom := reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
	obj, isObj := doc.(map[string]any)
	arr, isArr := doc.([]any)
	switch {
	case !custom && t.Kind() == reflect.Struct && isObj:
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			ft, ok := fieldType(t, k)
			if !ok {
				p := joinPath(path, k)
				return badRequest(p, "", "request body: %s: unknown field", p)
			}
			if e := locate(obj[k], ft, joinPath(path, k)); e != nil {
				return e
			}
		}
		return nil
	case !custom && t.Kind() == reflect.Map && isObj:
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			if e := locate(obj[k], t.Elem(), joinPath(path, k)); e != nil {
				return e
			}
		}
		return nil
	case !custom && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && isArr:
		for i, v := range arr {
			if e := locate(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); e != nil {
				return e
			}
		}
		return nil
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil
	}
	err = json.Unmarshal(raw, reflect.New(t).Interface())
	if err == nil {
		return nil
	}
	value := string(raw)
	if s, ok := doc.(string); ok {
		value = s
	}
	reason := err.Error()
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		reason = "must be " + expected(t, custom)
	}
	where := "request body"
	if path != "" {
		where += ": " + path
	}
	return badRequest(path, value, "%s: %s: %s", where, strconv.Quote(value), reason)
}

// fieldType finds the struct field that a JSON key decodes into, as encoding/json matches it:
// the tag name, or the Go name, exactly or else case-insensitively, through embedded structs.
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	var fold reflect.Type
	var walk func(t reflect.Type) (reflect.Type, bool)
	walk = func(t reflect.Type) (reflect.Type, bool) {
		for i := range t.NumField() {
			sf := t.Field(i)
			tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if tag == "-" {
				continue
			}
			if sf.Anonymous && tag == "" {
				et := sf.Type
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					if ft, ok := walk(et); ok {
						return ft, true
					}
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			name := tag
			if name == "" {
				name = sf.Name
			}
			if name == key {
				return sf.Type, true
			}
			if fold == nil && strings.EqualFold(name, key) {
				fold = sf.Type
			}
		}
		return nil, false
	}
	if ft, ok := walk(t); ok {
		return ft, true
	}
	return fold, fold != nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// expected describes in words what JSON a Go type accepts.
func expected(t reflect.Type, custom bool) string {
	if custom && reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("a whole number from %d to %d", int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a whole number from 0 to %d", uint64(1)<<t.Bits()-1)
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.String()
}
