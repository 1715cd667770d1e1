package testenv

import "runtime"

// LiveHeap is the heap still reachable after a full collection (two: the
// first may leave finalizers' objects for the second), for the tests that
// check memory is given back. The whole process's: call it from a test
// that does not run in parallel with others.
func LiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
