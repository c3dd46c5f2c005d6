package main

// JSON read and printed the way serde_json 1.x does it in the Rust payment plugin: strict
// UTF-8, a nesting limit of 128, the last of repeated keys, numbers kept as 64-bit integers
// when they fit and otherwise scaled like serde_json (without `float_roundtrip`), objects
// printed with sorted keys and floats in their shortest form. (encoding/json replaces invalid
// UTF-8 and lone surrogates instead of refusing them, so it cannot be used here.)

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

const maxDepth = 128

// jsonNumber is a number as serde_json keeps it: an integer when it fits 64 bits (isInt, with
// negative ones in i), otherwise a float.
type jsonNumber struct {
	isInt, negative bool
	u               uint64
	i               int64
	f               float64
}

// A parsed value is nil (null), bool, string, jsonNumber, []any or map[string]any.

var errNotJSON = errors.New("refused by the parser")

type parser struct {
	data  []byte
	at    int
	depth int
}

func parseJSON(data []byte) (any, error) {
	// A byte order mark is no JSON whitespace: it is refused below, as by serde_json.
	if !utf8.Valid(data) {
		return nil, errors.New("invalid UTF-8")
	}
	p := &parser{data: data}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.at != len(p.data) {
		return nil, errors.New("trailing characters")
	}
	return v, nil
}

func (p *parser) space() {
	for p.at < len(p.data) {
		switch p.data[p.at] {
		case ' ', '\t', '\n', '\r':
			p.at++
		default:
			return
		}
	}
}

func (p *parser) literal(word string) bool {
	if strings.HasPrefix(string(p.data[p.at:min(len(p.data), p.at+len(word))]), word) {
		p.at += len(word)
		return true
	}
	return false
}

func (p *parser) value() (any, error) {
	p.space()
	if p.at >= len(p.data) {
		return nil, errNotJSON
	}
	switch p.data[p.at] {
	case '{':
		p.at++
		return p.object()
	case '[':
		p.at++
		return p.array()
	case '"':
		p.at++
		return p.str()
	case 'n':
		if p.literal("null") {
			return nil, nil
		}
	case 't':
		if p.literal("true") {
			return true, nil
		}
	case 'f':
		if p.literal("false") {
			return false, nil
		}
	default:
		return p.number()
	}
	return nil, errNotJSON
}

func (p *parser) enter() error {
	p.depth++
	if p.depth >= maxDepth {
		return errors.New("recursion limit exceeded")
	}
	return nil
}

func (p *parser) array() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	items := []any{}
	p.space()
	if p.at < len(p.data) && p.data[p.at] == ']' {
		p.at++
		p.depth--
		return items, nil
	}
	for {
		item, err := p.value()
		if err != nil {
			return nil, err
		}
		items = append(items, item)
		p.space()
		if p.at >= len(p.data) {
			return nil, errNotJSON
		}
		c := p.data[p.at]
		p.at++
		if c == ']' {
			p.depth--
			return items, nil
		}
		if c != ',' {
			return nil, errNotJSON
		}
	}
}

func (p *parser) object() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	members := map[string]any{}
	p.space()
	if p.at < len(p.data) && p.data[p.at] == '}' {
		p.at++
		p.depth--
		return members, nil
	}
	for {
		p.space()
		if p.at >= len(p.data) || p.data[p.at] != '"' {
			return nil, errNotJSON
		}
		p.at++
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.at >= len(p.data) || p.data[p.at] != ':' {
			return nil, errNotJSON
		}
		p.at++
		item, err := p.value()
		if err != nil {
			return nil, err
		}
		members[key] = item // the last of repeated keys wins, as in serde_json's map
		p.space()
		if p.at >= len(p.data) {
			return nil, errNotJSON
		}
		c := p.data[p.at]
		p.at++
		if c == '}' {
			p.depth--
			return members, nil
		}
		if c != ',' {
			return nil, errNotJSON
		}
	}
}

func (p *parser) hex4() (rune, bool) {
	if p.at+4 > len(p.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.data[p.at:p.at+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.at += 4
	return rune(v), true
}

// str reads a string after its opening quote; escapes decoded, lone surrogates refused.
func (p *parser) str() (string, error) {
	var b strings.Builder
	for {
		if p.at >= len(p.data) {
			return "", errNotJSON
		}
		c := p.data[p.at]
		p.at++
		switch {
		case c == '"':
			return b.String(), nil
		case c < 0x20:
			return "", errors.New("control character in a string")
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		if p.at >= len(p.data) {
			return "", errNotJSON
		}
		e := p.data[p.at]
		p.at++
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := p.hex4()
			if !ok || (r >= 0xdc00 && r <= 0xdfff) {
				return "", errors.New("lone surrogate in a string")
			}
			if r >= 0xd800 && r <= 0xdbff {
				if p.at+2 > len(p.data) || p.data[p.at] != '\\' || p.data[p.at+1] != 'u' {
					return "", errors.New("lone surrogate in a string")
				}
				p.at += 2
				low, ok := p.hex4()
				if !ok || low < 0xdc00 || low > 0xdfff {
					return "", errors.New("lone surrogate in a string")
				}
				r = 0x10000 + (r-0xd800)<<10 + (low - 0xdc00)
			}
			b.WriteRune(r)
		default:
			return "", errors.New("invalid escape")
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (p *parser) digits() int {
	start := p.at
	for p.at < len(p.data) && isDigit(p.data[p.at]) {
		p.at++
	}
	return p.at - start
}

func (p *parser) number() (any, error) {
	start := p.at
	if p.at < len(p.data) && p.data[p.at] == '-' {
		p.at++
	}
	if p.at >= len(p.data) || !isDigit(p.data[p.at]) {
		return nil, errNotJSON
	}
	if p.data[p.at] == '0' {
		p.at++
	} else {
		p.digits()
	}
	if p.at < len(p.data) && p.data[p.at] == '.' {
		p.at++
		if p.digits() == 0 {
			return nil, errNotJSON
		}
	}
	if p.at < len(p.data) && (p.data[p.at] == 'e' || p.data[p.at] == 'E') {
		p.at++
		if p.at < len(p.data) && (p.data[p.at] == '+' || p.data[p.at] == '-') {
			p.at++
		}
		if p.digits() == 0 {
			return nil, errNotJSON
		}
	}
	n, ok := readNumber(string(p.data[start:p.at]))
	if !ok {
		return nil, errors.New("number out of range")
	}
	return n, nil
}

// pow10 holds 10^0 … 10^308, correctly rounded as serde_json's table is.
var pow10 = func() (table [309]float64) {
	for k := range table {
		table[k], _ = strconv.ParseFloat("1e"+strconv.Itoa(k), 64)
	}
	return table
}()

// readNumber reads a number checked against the JSON grammar as serde_json 1.x does without
// `float_roundtrip`: digits gathered into a u64 until one would overflow (later ones dropped),
// then scaled by a power of ten. False when serde_json refuses it as out of range.
func readNumber(text string) (jsonNumber, bool) {
	positive := text[0] != '-'
	if !positive {
		text = text[1:]
	}
	var significand uint64
	full := false
	take := func(digits string) int {
		taken := 0
		for k := 0; k < len(digits); k++ {
			d := uint64(digits[k] - '0')
			if full || significand > (math.MaxUint64-d)/10 {
				full = true
				break
			}
			significand = significand*10 + d
			taken++
		}
		return taken
	}
	mantissa, expText, hasExp := strings.Cut(strings.ReplaceAll(text, "E", "e"), "e")
	whole, fraction, hasDot := strings.Cut(mantissa, ".")
	exponent := int64(len(whole) - take(whole))
	isFloat := full
	if hasDot {
		full = false // serde_json tries the fraction digit by digit again
		exponent -= int64(take(fraction))
		isFloat = true
	}
	if hasExp {
		negative := strings.HasPrefix(expText, "-")
		var exp int64
		for _, c := range strings.TrimLeft(expText, "+-") {
			exp = exp*10 + int64(c-'0')
			if exp > math.MaxInt32 {
				if significand != 0 && !negative {
					return jsonNumber{}, false
				}
				zero := 0.0
				if !positive {
					zero = math.Copysign(0, -1)
				}
				return jsonNumber{f: zero}, true
			}
		}
		sum := exponent + exp
		if negative {
			sum = exponent - exp
		}
		exponent = max(math.MinInt32, min(math.MaxInt32, sum)) // i32 saturating
		isFloat = true
	}
	if !isFloat {
		if positive {
			return jsonNumber{isInt: true, u: significand, f: float64(significand)}, true
		}
		if significand != 0 && significand <= 1<<63 {
			i := int64(-significand)
			return jsonNumber{isInt: true, negative: true, i: i, f: float64(i)}, true
		}
		return jsonNumber{f: -float64(significand)}, true // -0, or below i64::MIN: a float
	}
	f := float64(significand)
	for {
		power := exponent
		if power < 0 {
			power = -power
		}
		if power <= 308 {
			if exponent >= 0 {
				f *= pow10[power]
				if math.IsInf(f, 0) {
					return jsonNumber{}, false
				}
			} else {
				f /= pow10[power]
			}
			break
		}
		if f == 0 {
			break
		}
		if exponent >= 0 {
			return jsonNumber{}, false
		}
		f /= 1e308
		exponent += 308
	}
	if !positive {
		f = -f
	}
	return jsonNumber{f: f}, true
}

// writeString appends s as a JSON string literal, escaped as serde_json does.
func writeString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for k := 0; k < len(s); k++ {
		c := s[k]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&15])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

func jsonString(s string) string {
	var b strings.Builder
	writeString(&b, s)
	return b.String()
}

// floatText is a float as serde_json prints it: `4.0`, `0.001`, `1e+16`, `1.5e-7`, with the
// fewest digits that read back as the same float.
func floatText(x float64) string {
	if x == 0 {
		if math.Signbit(x) {
			return "-0.0"
		}
		return "0.0"
	}
	sign := ""
	if x < 0 {
		sign = "-"
	}
	text := strconv.FormatFloat(math.Abs(x), 'e', -1, 64) // d[.ddd]e±XX, shortest
	mantissa, expText, _ := strings.Cut(text, "e")
	digits := strings.TrimRight(strings.Replace(mantissa, ".", "", 1), "0")
	if digits == "" {
		digits = "0"
	}
	exp, _ := strconv.Atoi(expText)
	length, kk := len(digits), exp+1 // 10^(kk-1) <= |x| < 10^kk
	switch {
	case length <= kk && kk <= 16:
		return sign + digits + strings.Repeat("0", kk-length) + ".0"
	case 0 < kk && kk <= 16:
		return sign + digits[:kk] + "." + digits[kk:]
	case -5 < kk && kk <= 0:
		return sign + "0." + strings.Repeat("0", -kk) + digits
	}
	fraction := ""
	if length > 1 {
		fraction = "." + digits[1:]
	}
	plus := ""
	if kk > 0 {
		plus = "+"
	}
	return sign + digits[:1] + fraction + "e" + plus + strconv.Itoa(kk-1)
}

// writeJSON appends v (from parseJSON) as compact JSON, as serde_json prints a `Value`.
func writeJSON(b *strings.Builder, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case string:
		writeString(b, v)
	case jsonNumber:
		switch {
		case !v.isInt:
			b.WriteString(floatText(v.f))
		case v.negative:
			b.WriteString(strconv.FormatInt(v.i, 10))
		default:
			b.WriteString(strconv.FormatUint(v.u, 10))
		}
	case []any:
		b.WriteByte('[')
		for k, item := range v {
			if k > 0 {
				b.WriteByte(',')
			}
			writeJSON(b, item)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for key := range v {
			keys = append(keys, key)
		}
		sort.Strings(keys) // byte order, as serde_json's map keeps them
		b.WriteByte('{')
		for k, key := range keys {
			if k > 0 {
				b.WriteByte(',')
			}
			writeString(b, key)
			b.WriteByte(':')
			writeJSON(b, v[key])
		}
		b.WriteByte('}')
	}
}

func jsonText(v any) string {
	var b strings.Builder
	writeJSON(&b, v)
	return b.String()
}
