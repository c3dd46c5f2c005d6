package main

// The payment decision, as in plugins/payment/src/decision.rs: a pure function of the order
// and the rules, so a redelivered order gets the very same result.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// rules come from the plugin's config.
type rules struct {
	maxTotal *int64 // cents; orders above it fail
	label    string // reported in every result, e.g. "go-v1"
}

// decision is the result of an order, and the masked card number for the log.
type decision struct {
	orderID, paymentID, remarks, status string
	maskedCard                          string // "" when the order has no card number
}

// ---- money (as in plugins/shop-data/src/money.rs) -----------------------------------------

func moneyText(cents int64) string {
	sign := ""
	abs := uint64(cents)
	if cents < 0 {
		sign, abs = "-", uint64(-cents)
	}
	return fmt.Sprintf("%s%d.%02d", sign, abs/100, abs%100)
}

// whiteSpace is Unicode White_Space, which Rust's `str::trim` takes away (unicode.IsSpace
// differs on U+0085 and U+FEFF, so it is spelled out).
func whiteSpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0d, r == 0x20, r == 0x85, r == 0xa0, r == 0x1680,
		r >= 0x2000 && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f,
		r == 0x3000:
		return true
	}
	return false
}

func rustTrim(s string) string { return strings.TrimFunc(s, whiteSpace) }

func allDigits(s string) bool {
	for k := 0; k < len(s); k++ {
		if !isDigit(s[k]) {
			return false
		}
	}
	return true
}

// parseMoney reads a non-negative amount with at most two decimals ("21", "21.4", "21.45").
func parseMoney(text string) (int64, bool) {
	whole, frac, dot := strings.Cut(rustTrim(text), ".")
	if dot && frac == "" {
		return 0, false
	}
	if whole == "" || !allDigits(whole) || len(frac) > 2 || !allDigits(frac) {
		return 0, false
	}
	value, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, false
	}
	fraction, _ := strconv.ParseInt((frac + "00")[:2], 10, 64)
	if value > (math.MaxInt64-fraction)/100 {
		return 0, false
	}
	return value*100 + fraction, true
}

// centsOfNumber is a JSON number in cents, rounded half away from zero like `f64::round`.
func centsOfNumber(value float64) (int64, bool) {
	rounded := math.Round(value * 100)
	if math.IsInf(value, 0) || math.IsNaN(value) || !(value >= 0) || !(rounded < 9223372036854775808.0) {
		return 0, false
	}
	return int64(rounded), true
}

// totalCents reads a total given as a string ("21.45", as the cart sends it) or a number.
func totalCents(total any) (int64, bool) {
	switch total := total.(type) {
	case string:
		return parseMoney(total)
	case jsonNumber:
		return centsOfNumber(total.f)
	}
	return 0, false
}

// ---- the decision -----------------------------------------------------------------------

// maskCard turns every character but the last four into `*`; four or fewer, all.
func maskCard(number string) string {
	chars := utf8.RuneCountInString(number)
	keep := 0
	if chars > 4 {
		keep = 4
	}
	var b strings.Builder
	index := 0
	for _, r := range number {
		if index < chars-keep {
			b.WriteByte('*')
		} else {
			b.WriteRune(r)
		}
		index++
	}
	return b.String()
}

// paymentID is below 100000, from the order id (64-bit FNV-1a), so redelivery repeats it.
func paymentID(orderID string) string {
	hash := uint64(0xcbf29ce484222325)
	for k := 0; k < len(orderID); k++ {
		hash = (hash ^ uint64(orderID[k])) * 0x100000001b3
	}
	return strconv.FormatUint(hash%100000, 10)
}

func member(object any, key string) any {
	if m, ok := object.(map[string]any); ok {
		return m[key]
	}
	return nil
}

// check applies the workshop's checks (a card number starting with 4 pays), then the rules.
func check(order map[string]any, r rules) (status, remarks, masked string) {
	card := order["creditCard"]
	if card == nil {
		return "FAILED", "Missing credit card details", ""
	}
	details, ok := card.(map[string]any)
	if !ok {
		return "FAILED", "Credit card details are not an object", ""
	}
	number, _ := details["number"].(string)
	if number == "" {
		return "FAILED", "Credit card has no number", ""
	}
	masked = maskCard(number)
	if !strings.HasPrefix(number, "4") {
		return "FAILED", "Invalid Credit Card: " + masked, masked
	}
	cents, ok := totalCents(order["total"])
	if !ok {
		return "FAILED", "Invalid total: " + jsonText(order["total"]), masked
	}
	if r.maxTotal != nil && cents > *r.maxTotal {
		return "FAILED", fmt.Sprintf("Rule max_total (%s) exceeded: total %s",
			moneyText(*r.maxTotal), moneyText(cents)), masked
	}
	name, ok := order["name"].(string)
	if !ok {
		name = "unknown customer"
	}
	shown := `{"number":` + jsonString(masked) + `,"expiration":` + jsonText(details["expiration"]) +
		`,"nameOnCard":` + jsonText(details["nameOnCard"]) + "}"
	return "COMPLETED", fmt.Sprintf("Payment of %s succeeded for %s CC details: %s",
		moneyText(cents), name, shown), masked
}

// errInvalid marks input that is not an order with an `orderId` (dead-lettered at once).
type errInvalid struct{ msg string }

func (e errInvalid) Error() string { return e.msg }

// decide decides the payment of an order (JSON).
func decide(data []byte, r rules) (decision, error) {
	parsed, err := parseJSON(data)
	if err != nil {
		return decision{}, errInvalid{"order is not JSON: " + err.Error()}
	}
	order, _ := parsed.(map[string]any)
	orderID, _ := member(order, "orderId").(string)
	if orderID == "" {
		return decision{}, errInvalid{"order has no orderId string"}
	}
	status, remarks, masked := check(order, r)
	return decision{orderID, paymentID(orderID), remarks, status, masked}, nil
}
