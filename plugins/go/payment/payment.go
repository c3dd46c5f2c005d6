package main

// Glue between the host and the decision, as in plugins/payment/src/handler.rs: config, the
// fake processing delay, logging and publishing. Each order gives exactly one result on topic
// `payments` (config `payments_topic`), keyed by order id: `{orderId, paymentId, remarks,
// status, rules}` with `rules: "go-v1"` (or "go-v2").
//
// Config: `rules` ("v1" or "v2"; v2 caps the total at 100.00 unless `max_total` says
// otherwise), `max_total` (e.g. "100.00"), `payments_topic` (default `payments`),
// `processing_delay_ms` (default 0). A bad config value is a `retry` failure (the deployment's
// fault, not the order's); input that is not an order with an `orderId` is `invalid`.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

func retry(format string, args ...any) *failure {
	return &failure{msg: fmt.Sprintf(format, args...)}
}

func currentRules(h host) (rules, *failure) {
	version, ok := h.config("rules")
	if !ok {
		version = "v1"
	}
	if version != "v1" && version != "v2" {
		return rules{}, retry("config rules is not v1 or v2: %s", jsonString(version))
	}
	r := rules{label: "go-" + version}
	if text, ok := h.config("max_total"); ok {
		cents, ok := parseMoney(text)
		if !ok {
			return rules{}, retry("config max_total is not an amount: %s", jsonString(text))
		}
		r.maxTotal = &cents
	} else if version == "v2" {
		cap := int64(100_00)
		r.maxTotal = &cap
	}
	return r, nil
}

// configNumber reads a u64 as Rust's `str::parse` does: an optional `+`, then digits.
func configNumber(h host, key string) (uint64, *failure) {
	text, ok := h.config(key)
	if !ok {
		return 0, nil
	}
	digits := strings.TrimPrefix(rustTrim(text), "+")
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || !allDigits(digits) {
		return 0, retry("config %s is not a number: %s", key, jsonString(text))
	}
	return n, nil
}

// result is the published payment event, with its fields in the Rust plugin's order.
func result(d decision, label string) []byte {
	var b strings.Builder
	for k, field := range [][2]string{
		{"orderId", d.orderID}, {"paymentId", d.paymentID}, {"remarks", d.remarks},
		{"status", d.status}, {"rules", label},
	} {
		if k == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		writeString(&b, field[0])
		b.WriteByte(':')
		writeString(&b, field[1])
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// pay decides the payment of an order and publishes the result.
func pay(h host, order []byte) ([]byte, *failure) {
	r, fail := currentRules(h)
	if fail != nil {
		return nil, fail
	}
	delay, fail := configNumber(h, "processing_delay_ms")
	if fail != nil {
		return nil, fail
	}
	if delay > 0 {
		// The workshop's fake processing time; the host's timeout bounds it.
		time.Sleep(time.Duration(min(delay, math.MaxInt64/uint64(time.Millisecond))) * time.Millisecond)
	}
	d, err := decide(order, r)
	if err != nil {
		return nil, &failure{invalid: true, msg: err.Error()}
	}
	card := d.maskedCard
	if card == "" {
		card = "none"
	}
	h.logInfo(fmt.Sprintf("payment %s of order %s: %s (card %s, rules %s): %s",
		d.paymentID, d.orderID, d.status, card, r.label, d.remarks))
	value := result(d, r.label)
	topic, ok := h.config("payments_topic")
	if !ok {
		topic = "payments"
	}
	if err := h.send(topic, []byte(d.orderID), value); err != nil {
		return nil, retry("cannot publish payment of order %s: %v", d.orderID, err)
	}
	return value, nil
}

// onMessage handles an order from the bus.
func onMessage(h host, _, order []byte) *failure {
	_, fail := pay(h, order)
	return fail
}

// onRequest answers a POST of an order with its result, like the Rust plugin.
func onRequest(h host, method string, body []byte) (status int, response []byte, fail *failure) {
	message := func(status int, text string) []byte {
		return []byte(`{"message":` + jsonString(text) + `,"status":` + strconv.Itoa(status) + "}")
	}
	if method != "POST" {
		return 405, message(405, "POST an order to pay for it"), nil
	}
	value, fail := pay(h, body)
	switch {
	case fail == nil:
		return 200, value, nil
	case fail.invalid:
		return 400, message(400, fail.msg), nil
	}
	return 0, nil, fail
}
