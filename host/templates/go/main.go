package main

// {{name}}: forwards each message to config `output_topic` (default `output`) and answers each
// HTTP request with its body. Build with `bash build.sh`, test with
// `eventhost test {{name}}.wasm cases.toml`. abi.go lowers the contract by hand; contract.go
// is what it offers.

// main is never called: the plugin is a library (a reactor) whose exports the host calls.
func main() {}

func onMessage(h host, key, value []byte) *failure {
	if len(value) == 0 {
		return &failure{invalid: true, msg: "empty message"}
	}
	topic, ok := h.config("output_topic")
	if !ok {
		topic = "output"
	}
	if err := h.send(topic, key, value); err != nil {
		return &failure{msg: err.Error()}
	}
	return nil
}

func onRequest(h host, method string, body []byte) (int, []byte, *failure) {
	return 200, body, nil
}
