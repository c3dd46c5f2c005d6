# Payment plugin in Python (world `plugin`, built with componentize-py): the rules of the Rust
# plugin in plugins/payment, so each order gets the same decision and remarks from either.
#
# Consumes orders and answers `POST /api/payment` with an order as the body. Each order gives
# exactly one result on topic `payments` (config `payments_topic`), keyed by order id:
# `{orderId, paymentId, remarks, status, rules}` with `rules: "py-v1"` (or `"py-v2"`).
#
# Config: `rules` ("v1" or "v2"; v2 caps the total at 100.00 unless `max_total` says
# otherwise), `max_total` (e.g. "100.00"), `payments_topic` (default `payments`),
# `processing_delay_ms` (default 0). A bad config value is a `retry` failure (the deployment's
# fault, not the order's); input that is not an order with an `orderId` is `invalid`.
#
# The order is read and printed the way serde_json does it in the Rust plugin (numbers,
# escapes, key order, nesting limit), so remarks that echo parts of the order match byte for byte.

import json
import math
import re
import time
from decimal import Decimal

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, log, outbox, types

I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1
I32_MAX = (1 << 31) - 1


class Failure(Exception):
    """A failure result of the contract: `invalid` is dead-lettered (HTTP 400), `retry` retried."""

    def __init__(self, kind, text):
        super().__init__(text)
        self.kind = kind
        self.text = text

    def as_err(self):
        if self.kind == "invalid":
            return Err(types.Failure_Invalid(self.text))
        return Err(types.Failure_Retry(self.text))


# ---- money (as in plugins/shop-data/src/money.rs) ------------------------------------------

def to_text(cents):
    """Cents as text with two decimals, e.g. 750 -> "7.50"."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


# Rust's `str::trim` takes Unicode White_Space, which is not Python's `str.isspace`.
WHITE_SPACE = "[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
TRIMMED = re.compile(f"^{WHITE_SPACE}|{WHITE_SPACE}$")
DIGITS = re.compile("[0-9]*")


def rust_trim(text):
    return TRIMMED.sub("", text)


def parse_money(text):
    """A non-negative amount with at most two decimals ("21", "21.4", "21.45") in cents."""
    trimmed = rust_trim(text)
    whole, dot, frac = trimmed.partition(".")
    if dot and frac == "":
        return None
    if whole == "" or not DIGITS.fullmatch(whole) or len(frac) > 2 or not DIGITS.fullmatch(frac):
        return None
    if len(whole.lstrip("0")) > 19:  # past i64 (and past what int() converts quickly)
        return None
    cents = int(whole) * 100 + int(frac.ljust(2, "0"))
    return cents if cents <= I64_MAX else None


def cents_of_number(value):
    """A JSON number as cents, rounded half away from zero like Rust's `f64::round`."""
    if not math.isfinite(value) or not value >= 0:
        return None
    scaled = value * 100
    if not math.isfinite(scaled):
        return None
    cents = math.floor(scaled)
    if scaled - cents >= 0.5:
        cents += 1
    return cents if cents < 2**63 else None


def total_cents(total):
    """A total given as a string ("21.45", as the cart sends it) or as a number."""
    if isinstance(total, str):
        return parse_money(total)
    if isinstance(total, JsonNumber):
        return cents_of_number(total.value)
    return None


# ---- JSON read and printed the way serde_json does it in the Rust plugin -------------------

class JsonNumber:
    """A number as serde_json reads it: a float, and the integer when it keeps one (a 64-bit
    integer prints as such; a float prints as `4.0`)."""

    def __init__(self, value, integer=None):
        self.value = value
        self.integer = integer


def serde_number(source):
    """The number written `source` as serde_json 1.x reads it without `float_roundtrip`:
    digits gathered into a u64 until it would overflow (later ones dropped), then scaled by a
    power of ten. None when serde_json refuses it as out of range."""
    positive = not source.startswith("-")
    body = (source if positive else source[1:]).replace("E", "e")
    mantissa, _, exp_text = body.partition("e")
    whole, dot, fraction = mantissa.partition(".")
    significand = 0
    full = False

    def take(digits):
        nonlocal significand, full
        taken = 0
        for c in digits:
            following = significand * 10 + int(c)
            if full or following > U64_MAX:
                full = True
                break
            significand = following
            taken += 1
        return taken

    exponent = len(whole) - take(whole)
    is_float = full
    if dot:
        full = False  # serde_json tries the fraction digit by digit again
        exponent -= take(fraction)
        is_float = True
    if "e" in body:
        negative = exp_text.startswith("-")
        digits = exp_text.lstrip("+-")
        exp = 0
        for c in digits:
            exp = exp * 10 + int(c)
            if exp > I32_MAX:
                if significand != 0 and not negative:
                    return None
                return JsonNumber(0.0 if positive else -0.0)
        total = exponent - exp if negative else exponent + exp
        exponent = max(-I32_MAX - 1, min(I32_MAX, total))  # i32 saturating
        is_float = True
    if not is_float:
        n = significand if positive else -significand
        if positive or -(1 << 63) <= n < 0:
            return JsonNumber(float(n), n)
        return JsonNumber(-float(significand))  # -0, or below i64::MIN: a float
    f = float(significand)
    while True:
        power = abs(exponent)
        if power <= 308:
            if exponent >= 0:
                f *= float(f"1e{power}")
                if math.isinf(f):
                    return None
            else:
                f /= float(f"1e{power}")
            break
        if f == 0:
            break
        if exponent >= 0:
            return None
        f /= 1e308
        exponent += 308
    return JsonNumber(f if positive else -f)


def too_deep(text):
    """serde_json's nesting limit: it refuses a 128th level of arrays or objects."""
    if text.count("[") + text.count("{") < 128:
        return False
    depth = 0
    in_string = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth >= 128:
                return True
        elif c in "]}":
            depth -= 1
        i += 1
    return False


def well_formed(text):
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class NotJson(Exception):
    pass


def checked_object(pairs):
    for key, value in pairs:
        if not well_formed(key) or (isinstance(value, str) and not well_formed(value)):
            raise NotJson("lone surrogate in a string")
    return dict(pairs)


def refuse_constant(name):
    raise NotJson(f"{name} is not JSON")


def number_of(source):
    number = serde_number(source)
    if number is None:
        raise NotJson("number out of range")
    return number


def parse_json(data):
    """Parses `data` (bytes) as JSON, refusing what serde_json refuses."""
    try:
        text = bytes(data).decode("utf-8")  # strict: no surrogates, no overlong forms
        if too_deep(text):
            raise NotJson("recursion limit exceeded")
        # A byte order mark is refused by json.loads, as by serde_json.
        value = json.loads(
            text,
            parse_int=number_of,
            parse_float=number_of,
            parse_constant=refuse_constant,
            object_pairs_hook=checked_object,
        )
        if isinstance(value, str) and not well_formed(value):
            raise NotJson("lone surrogate in a string")
        if isinstance(value, list):
            check_strings(value)
        return value
    except (NotJson, ValueError, RecursionError) as e:
        raise Failure("invalid", f"order is not JSON: {e}") from None


def check_strings(items):
    """Strings in arrays are not seen by `object_pairs_hook`."""
    for item in items:
        if isinstance(item, str) and not well_formed(item):
            raise NotJson("lone surrogate in a string")
        if isinstance(item, list):
            check_strings(item)


def float_text(x):
    """A float as serde_json prints it: `4.0`, `0.001`, `1e+16`, `1.5e-7` (shortest)."""
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    _, digit_tuple, exp = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exp += len(digit_tuple) - len(digits)
    length = len(digits)
    kk = length + exp  # 10^(kk-1) <= |x| < 10^kk
    if length <= kk <= 16:
        return f"{sign}{digits}{'0' * (kk - length)}.0"
    if 0 < kk <= 16:
        return f"{sign}{digits[:kk]}.{digits[kk:]}"
    if -5 < kk <= 0:
        return f"{sign}0.{'0' * -kk}{digits}"
    fraction = "" if length == 1 else f".{digits[1:]}"
    return f"{sign}{digits[0]}{fraction}e{'+' if kk > 0 else ''}{kk - 1}"


def json_string(text):
    return json.dumps(text, ensure_ascii=False)


def json_text(value):
    """`value` (from `parse_json`) as compact JSON the way serde_json prints it: keys sorted."""
    if isinstance(value, JsonNumber):
        return float_text(value.value) if value.integer is None else str(value.integer)
    if isinstance(value, list):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        members = (f"{json_string(k)}:{json_text(value[k])}" for k in sorted(value))
        return "{" + ",".join(members) + "}"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return json_string(value)


# ---- the decision (as in plugins/payment/src/decision.rs) ----------------------------------

def mask_card(number):
    """Every character but the last four becomes `*`; four or fewer, all."""
    keep = 4 if len(number) > 4 else 0
    return "*" * (len(number) - keep) + number[len(number) - keep:]


def payment_id(order_id):
    """A payment id below 100000 from the order id (64-bit FNV-1a), so redelivery repeats it."""
    h = 0xCBF29CE484222325
    for byte in order_id.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & U64_MAX
    return str(h % 100000)


def check(order, max_total):
    """The workshop's checks (a card number starting with 4 pays), then the configured rules."""
    card = order.get("creditCard")
    if card is None:
        return "FAILED", "Missing credit card details", None
    if not isinstance(card, dict):
        return "FAILED", "Credit card details are not an object", None
    number = card.get("number")
    if not isinstance(number, str) or number == "":
        return "FAILED", "Credit card has no number", None
    masked = mask_card(number)
    if not number.startswith("4"):
        return "FAILED", f"Invalid Credit Card: {masked}", masked
    total = order.get("total")
    cents = total_cents(total)
    if cents is None:
        return "FAILED", f"Invalid total: {json_text(total)}", masked
    if max_total is not None and cents > max_total:
        remarks = f"Rule max_total ({to_text(max_total)}) exceeded: total {to_text(cents)}"
        return "FAILED", remarks, masked
    shown = (
        f'{{"number":{json_string(masked)},"expiration":{json_text(card.get("expiration"))},'
        f'"nameOnCard":{json_text(card.get("nameOnCard"))}}}'
    )
    name = order.get("name")
    name = name if isinstance(name, str) else "unknown customer"
    remarks = f"Payment of {to_text(cents)} succeeded for {name} CC details: {shown}"
    return "COMPLETED", remarks, masked


def decide(data, rules):
    """The result for `data` (an order as JSON) and the masked card; not an order is `invalid`."""
    order = parse_json(data)
    order_id = order.get("orderId") if isinstance(order, dict) else None
    if not isinstance(order_id, str) or order_id == "":
        raise Failure("invalid", "order has no orderId string")
    status, remarks, masked = check(order, rules["max_total"])
    result = {
        "orderId": order_id,
        "paymentId": payment_id(order_id),
        "remarks": remarks,
        "status": status,
        "rules": rules["label"],
    }
    return result, masked


# ---- glue (as in plugins/payment/src/handler.rs) -------------------------------------------

def rules():
    """v1: no cap unless `max_total` sets one; v2: a cap of 100.00 unless `max_total` says."""
    version = config.get("rules")
    if version is None:
        version = "v1"
    if version not in ("v1", "v2"):
        raise Failure("retry", f"config rules is not v1 or v2: {json_string(version)}")
    text = config.get("max_total")
    if text is None:
        max_total = 100_00 if version == "v2" else None
    else:
        max_total = parse_money(text)
        if max_total is None:
            raise Failure("retry", f"config max_total is not an amount: {json_string(text)}")
    return {"max_total": max_total, "label": f"py-{version}"}


def config_number(key):
    text = config.get(key)
    if text is None:
        return None
    digits = rust_trim(text).removeprefix("+")
    # Rust's `u64::from_str`: an optional `+`, then digits, at most u64::MAX.
    fits = digits != "" and DIGITS.fullmatch(digits) and len(digits.lstrip("0")) <= 20
    if not fits or int(digits) > U64_MAX:
        raise Failure("retry", f"config {key} is not a number: {json_string(text)}")
    return int(digits)


def encode(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def pay(order):
    """Decides the payment of `order` and publishes the result."""
    current = rules()
    delay = config_number("processing_delay_ms") or 0
    if delay > 0:
        # The workshop's fake processing time; the host's timeout bounds it.
        time.sleep(min(delay, 10**12) / 1000)  # time.sleep refuses ~2**63 ns and more
    result, masked = decide(order, current)
    order_id = result["orderId"]
    log.log(
        log.Level.INFO,
        f"payment {result['paymentId']} of order {order_id}: {result['status']} "
        f"(card {masked or 'none'}, rules {result['rules']}): {result['remarks']}",
    )
    topic = config.get("payments_topic")
    message = types.Message(
        topic="payments" if topic is None else topic,
        key=order_id.encode("utf-8"),
        value=encode(result),
        headers=[],
    )
    try:
        outbox.send(message)
    except Err as e:
        raise Failure("retry", f"cannot publish payment of order {order_id}: {e.value}") from None
    return result


def json_response(status, value):
    return types.HttpResponse(
        status=status, headers=[("content-type", "application/json")], body=encode(value)
    )


class MessageHandler(exports.MessageHandler):
    def handle(self, delivery):
        try:
            pay(delivery.message.value)
        except Failure as failure:
            raise failure.as_err() from None


class HttpHandler(exports.HttpHandler):
    def handle(self, request):
        if request.method != "POST":
            return json_response(405, {"message": "POST an order to pay for it", "status": 405})
        try:
            return json_response(200, pay(request.body))
        except Failure as failure:
            if failure.kind == "invalid":
                return json_response(400, {"message": failure.text, "status": 400})
            raise failure.as_err() from None
