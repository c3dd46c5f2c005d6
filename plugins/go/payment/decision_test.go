package main

import "testing"

// The Rust plugin's remarks for the same orders (plugins/payment, and plugins/cases/payment.toml
// runs them all through the built component).
func TestDecisionsMatchTheRustPlugin(t *testing.T) {
	v1 := rules{label: "go-v1"}
	cases := []struct{ order, want string }{
		{`{"orderId":"o-1","total":"20.00","name":"Jane Doe","creditCard":{"number":"4123987754646678","expiration":"04/29","nameOnCard":"Jane G Doe"}}`,
			`COMPLETED 4104 Payment of 20.00 succeeded for Jane Doe CC details: {"number":"************6678","expiration":"04/29","nameOnCard":"Jane G Doe"}`},
		{`{"orderId":"o-1","total":[1, 2.50, 1e2, -0, 123456789012345678901, 1e-7, 0.00001],"creditCard":{"number":"4123987754646678"}}`,
			`FAILED 4104 Invalid total: [1,2.5,100.0,-0.0,1.2345678901234567e+20,1e-7,0.00001]`},
		{`{"orderId":"o-é","total":" 5 ","creditCard":{"number":"4١٢٣٤٥٦٧","nameOnCard":{"z":"\"\n\u0001","a":[true,null]}}}`,
			`COMPLETED 19925 Payment of 5.00 succeeded for unknown customer CC details: {"number":"****٤٥٦٧","expiration":null,"nameOnCard":{"a":[true,null],"z":"\"\n\u0001"}}`},
		{`{"orderId":"x","orderId":"o-dup","creditCard":[]}`, `FAILED 89250 Credit card details are not an object`},
	}
	for _, c := range cases {
		d, err := decide([]byte(c.order), v1)
		if err != nil {
			t.Fatalf("%s: %v", c.order, err)
		}
		if got := d.status + " " + d.paymentID + " " + d.remarks; got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.order, got, c.want)
		}
	}
	for _, bad := range []string{`{"orderId":"o-1",`, "\xef\xbb\xbf{}", `{"a":"\ud800"}`, `{"orderId":1}`, `[]`, "{\"orderId\":\"\xff\"}"} {
		if _, err := decide([]byte(bad), v1); err == nil {
			t.Errorf("%q was decided", bad)
		}
	}
}
