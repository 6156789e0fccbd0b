package config

import (
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// setter stores one attribute's value into its destination, or says why it cannot. Setters check
// only the type and what the Go type can hold; what the value means is the validator's business,
// so that the HTTP API, the CLI and files reject the same things with the same words.
//
// Types are not converted: port = "80" is refused rather than turned into a number, because a
// quoted number in a load-balancer table is more often a mistake than a style.
type setter func(v cty.Value) *badValue

// badValue is a setter's complaint: the reason, and the list index it is about (-1: the whole
// value), so the diagnostic can point at the element.
type badValue struct {
	elem   int
	reason string
}

func whole(reason string) *badValue { return &badValue{elem: -1, reason: reason} }

// text stores a string.
func text[T ~string](dst *T) setter {
	return func(v cty.Value) *badValue {
		if v.Type() != cty.String {
			return whole("must be a string")
		}
		*dst = T(v.AsString())
		return nil
	}
}

// texts stores a list of strings; an empty list stores nil, as if the key were left out.
func texts[T ~string](dst *[]T) setter {
	return func(v cty.Value) *badValue {
		if !v.Type().IsTupleType() && !v.Type().IsListType() {
			return whole(`must be a list of strings, like ["a", "b"]`)
		}
		var out []T
		for i, e := range v.AsValueSlice() {
			if e.IsNull() || e.Type() != cty.String {
				return &badValue{elem: i, reason: "must be a string"}
			}
			out = append(out, T(e.AsString()))
		}
		*dst = out
		return nil
	}
}

// boolean stores true or false.
func boolean(dst *bool) setter {
	return func(v cty.Value) *badValue {
		if v.Type() != cty.Bool {
			return whole("must be true or false")
		}
		*dst = v.True()
		return nil
	}
}

// integer is the integer types the model uses.
type integer interface {
	~int | ~uint16 | ~uint32 | ~uint64
}

// number stores a whole number in lo–hi. Pass the widest range the Go type holds unless zero
// must be refused here because the destination cannot tell an explicit 0 from "not set".
func number[T integer](dst *T, lo, hi T) setter {
	return func(v cty.Value) *badValue {
		if v.Type() != cty.Number || !v.AsBigFloat().IsInt() {
			return whole("must be a whole number")
		}
		// Compared as floats: converting 1e300000000 to a big.Int first would take a while.
		f := v.AsBigFloat()
		if f.Cmp(floatOf(lo)) < 0 || f.Cmp(floatOf(hi)) > 0 {
			return whole(rangeReason(lo, hi))
		}
		if f.Sign() < 0 {
			n, _ := f.Int64()
			*dst = T(n)
		} else {
			n, _ := f.Uint64()
			*dst = T(n)
		}
		return nil
	}
}

// optionalInt stores an integer behind a pointer, for fields where nil means "default" and 0 is a
// real value (a real server's weight). The range is left to validation, which knows it.
func optionalInt(dst **int) setter {
	var n int
	set := number(&n, intLo, intHi)
	return func(v cty.Value) *badValue {
		if bad := set(v); bad != nil {
			return bad
		}
		*dst = &n
		return nil
	}
}

// Bounds for int fields: any 32-bit value. The meaningful limits (weight 0–65535, rise 1–100)
// are fsm's, so these only keep the number in a Go int and let validation word the limit.
const (
	intLo = math.MinInt32
	intHi = math.MaxInt32
)

func floatOf[T integer](x T) *big.Float {
	if x < 0 {
		return new(big.Float).SetInt64(int64(x))
	}
	return new(big.Float).SetUint64(uint64(x))
}

// rangeReason words a range the way fsm does ("must be 0–65535"). A bound that is only there to
// keep the number in a Go int is not worth stating.
func rangeReason[T integer](lo, hi T) string {
	switch {
	case int64(lo) <= math.MinInt32:
		return "is out of range"
	case uint64(hi) == math.MaxInt32 || uint64(hi) == math.MaxUint64:
		return fmt.Sprintf("must be at least %d", lo)
	default:
		return fmt.Sprintf("must be %d–%d", lo, hi)
	}
}

// duration stores a Go duration string ("250ms", "5m") of at least lo.
func duration[T ~int64](dst *T, lo time.Duration) setter {
	return func(v cty.Value) *badValue {
		if v.Type() != cty.String {
			return whole(`must be a duration string like "5s"`)
		}
		d, err := time.ParseDuration(v.AsString())
		if err != nil {
			return whole(`must be a duration like "5s" or "250ms"`)
		}
		if d < lo {
			if lo > 0 {
				return whole("must be positive")
			}
			return whole("must not be negative")
		}
		*dst = T(d)
		return nil
	}
}

// address stores an IPv4 or IPv6 address.
func address(dst *netip.Addr) setter {
	return func(v cty.Value) *badValue {
		if v.Type() != cty.String {
			return whole("must be an IP address string")
		}
		a, err := netip.ParseAddr(v.AsString())
		if err != nil {
			return whole("must be an IPv4 or IPv6 address")
		}
		*dst = a
		return nil
	}
}

// prefixes stores a list of addresses, each with an optional prefix length; a bare address is a
// host prefix (/32, /128). The address keeps its host bits: 192.0.2.6/25 is the VIP 192.0.2.6
// on a /25, as `ip addr add` takes it.
func prefixes(dst *[]netip.Prefix) setter {
	var raw []string
	set := texts(&raw)
	return func(v cty.Value) *badValue {
		if bad := set(v); bad != nil {
			return bad
		}
		var out []netip.Prefix
		for i, s := range raw {
			p, ok := parsePrefix(s)
			if !ok {
				return &badValue{elem: i, reason: "must be an address or address/prefix-length"}
			}
			out = append(out, p)
		}
		*dst = out
		return nil
	}
}

func parsePrefix(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p, err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}
