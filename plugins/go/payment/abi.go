//go:build wasip1

package main

// A minimal, hand-written canonical ABI layer for world `plugin` of wit/: its two exports, and
// the three imports `contract.go` offers (config, log, outbox), lowered by hand. The plugin
// provides `onMessage` and `onRequest`. Standard Go has no
// component bindings generator that the registries here provide, and this layer is small
// enough to check against the WIT contract by reading it.
//
// The one rule that keeps standard Go safe as a component: `cabi_realloc` never runs Go's
// allocator. The host (and the preview1 adapter, for its own state) call it while Go is inside
// an import call or still initialising its runtime, where a Go allocation or a GC traps. It
// hands out memory from a static arena instead; an instance handles one input, so the arena is
// never freed.

import (
	"errors"
	"unsafe"
)

// arena holds every value the host passes in: the input, config values, import results.
var (
	arena     [4 << 20]byte
	arenaUsed uintptr
)

//go:wasmexport cabi_realloc
//go:nosplit
func cabiRealloc(oldPtr, oldSize, align, newSize uint32) uint32 {
	if newSize == 0 {
		return align
	}
	base := uintptr(unsafe.Pointer(&arena[0]))
	start := (base + arenaUsed + uintptr(align) - 1) &^ (uintptr(align) - 1)
	if start+uintptr(newSize) > base+uintptr(len(arena)) {
		// Past the arena: an address outside memory, which the host refuses with a trap.
		return 0xffff_fff0
	}
	arenaUsed = start + uintptr(newSize) - base
	if oldPtr != 0 {
		for k := uintptr(0); k < uintptr(min(oldSize, newSize)); k++ {
			*(*byte)(unsafe.Pointer(start + k)) = *(*byte)(unsafe.Pointer(uintptr(oldPtr) + k))
		}
	}
	return uint32(start)
}

// bytesAt is a view of guest memory (nothing is copied).
func bytesAt(ptr, size uint32) []byte {
	if size == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), size)
}

func stringAt(ptr, size uint32) string { return string(bytesAt(ptr, size)) }

// kept holds what results point to until the host has read them (the instance ends after).
var kept [][]byte

// address of a copy of b that stays alive.
func address(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	c := append([]byte(nil), b...)
	kept = append(kept, c)
	return uint32(uintptr(unsafe.Pointer(&c[0])))
}

func store32(at uintptr, v uint32) { *(*uint32)(unsafe.Pointer(at)) = v }
func store16(at uintptr, v uint16) { *(*uint16)(unsafe.Pointer(at)) = v }
func store8(at uintptr, v uint8)   { *(*uint8)(unsafe.Pointer(at)) = v }
func load32(at uintptr) uint32     { return *(*uint32)(unsafe.Pointer(at)) }

// returnArea is where an export writes a result too large for a return value.
var returnArea [24]uint32

func returnAreaAt() uintptr { return uintptr(unsafe.Pointer(&returnArea[0])) }

// ---- imports ----------------------------------------------------------------------------

//go:wasmimport eventhost:plugin/config@0.1.0 get
func importConfigGet(keyPtr, keyLen, ret uint32)

//go:wasmimport eventhost:plugin/log@0.1.0 log
func importLog(level, msgPtr, msgLen uint32)

//go:wasmimport eventhost:plugin/outbox@0.1.0 send
func importSend(topicPtr, topicLen, hasKey, keyPtr, keyLen, valuePtr, valueLen, headersPtr, headersLen, ret uint32)

// importResult is an import's return area: an option<string> or a result<_, string>.
var importResult [3]uint32

type wasmHost struct{}

func (wasmHost) config(key string) (string, bool) {
	k := []byte(key)
	ret := uintptr(unsafe.Pointer(&importResult[0]))
	importConfigGet(address(k), uint32(len(k)), uint32(ret))
	if *(*uint8)(unsafe.Pointer(ret)) == 0 {
		return "", false
	}
	return stringAt(load32(ret+4), load32(ret+8)), true
}

const levelInfo = 2 // `level.info` of log.wit

func (wasmHost) logInfo(msg string) {
	m := []byte(msg)
	importLog(levelInfo, address(m), uint32(len(m)))
}

func (wasmHost) send(topic string, key, value []byte) error {
	t := []byte(topic)
	ret := uintptr(unsafe.Pointer(&importResult[0]))
	importSend(address(t), uint32(len(t)), 1, address(key), uint32(len(key)),
		address(value), uint32(len(value)), 0, 0, uint32(ret))
	if *(*uint8)(unsafe.Pointer(ret)) != 0 {
		return errors.New(stringAt(load32(ret+4), load32(ret+8)))
	}
	return nil
}

// ---- exports ----------------------------------------------------------------------------

// writeFailure stores `failure` (variant invalid | retry of a string) at `at`.
func writeFailure(at uintptr, f *failure) {
	kind := uint8(1) // retry
	if f.invalid {
		kind = 0
	}
	msg := []byte(f.msg)
	store8(at, kind)
	store32(at+4, address(msg))
	store32(at+8, uint32(len(msg)))
}

// handle of message-handler: the delivery record's 14 flat values in, a pointer to
// result<_, failure> out.
//
//go:wasmexport eventhost:plugin/message-handler@0.1.0#handle
func handleMessage(topicPtr, topicLen, hasKey, keyPtr, keyLen, valuePtr, valueLen,
	headersPtr, headersLen, partition uint32, offset int64, hasTimestamp uint32,
	timestamp int64, attempt uint32) uint32 {
	ret := returnAreaAt()
	var key []byte
	if hasKey != 0 {
		key = bytesAt(keyPtr, keyLen)
	}
	if fail := onMessage(wasmHost{}, key, bytesAt(valuePtr, valueLen)); fail != nil {
		store8(ret, 1)
		writeFailure(ret+4, fail)
	} else {
		store8(ret, 0)
	}
	return uint32(ret)
}

// handle of http-handler: the request record's 14 flat values in, a pointer to
// result<http-response, failure> out.
//
//go:wasmexport eventhost:plugin/http-handler@0.1.0#handle
func handleRequest(methodPtr, methodLen, pathPtr, pathLen, queryPtr, queryLen, routePtr,
	routeLen, paramsPtr, paramsLen, headersPtr, headersLen, bodyPtr, bodyLen uint32) uint32 {
	ret := returnAreaAt()
	status, body, fail := onRequest(wasmHost{}, stringAt(methodPtr, methodLen), bytesAt(bodyPtr, bodyLen))
	if fail != nil {
		store8(ret, 1)
		writeFailure(ret+4, fail)
		return uint32(ret)
	}
	// One header, `content-type: application/json`: a list of one tuple<string, string>.
	name, value := []byte("content-type"), []byte("application/json")
	header := make([]byte, 16)
	kept = append(kept, header)
	h := uintptr(unsafe.Pointer(&header[0]))
	store32(h, address(name))
	store32(h+4, uint32(len(name)))
	store32(h+8, address(value))
	store32(h+12, uint32(len(value)))
	store8(ret, 0)
	store16(ret+4, uint16(status))
	store32(ret+8, uint32(h))
	store32(ret+12, 1)
	store32(ret+16, address(body))
	store32(ret+20, uint32(len(body)))
	return uint32(ret)
}
