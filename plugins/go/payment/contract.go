package main

// What abi.go (the contract's imports and exports, lowered by hand) and the plugin's own code
// share: the host's services, and a failure result.

// host is what the plugin asks of eventhost (the contract's imports).
type host interface {
	config(key string) (string, bool)
	logInfo(msg string)
	send(topic string, key, value []byte) error
}

// failure is a failure result of the contract: `invalid` is dead-lettered (HTTP 400), `retry`
// is retried.
type failure struct {
	invalid bool
	msg     string
}
