package docker

import (
	"bytes"
	"encoding/binary"
)

// pauseELF is the whole program of a pod's infra container on amd64, as a
// static ELF executable of 129 bytes: pause(2) in a loop. It holds the
// pod's namespaces and nothing else; Kubernetes' pause container does the
// same in C. Its memory is one page of code and a stack, against some 4 MiB
// for the dev binary's own `pause` (package initialisation). It installs no
// signal handler, so as PID 1 of its namespace it ignores SIGTERM: the
// driver gives it no stop grace and removes it with SIGKILL. On other
// architectures the infra container runs the dev binary's `pause` instead.
func pauseELF() []byte {
	const (
		base     = 0x400000
		ehSize   = 64
		phSize   = 56
		codeOff  = ehSize + phSize
		elfClass = 2  // 64-bit
		elfData  = 1  // little endian
		etExec   = 2  // executable
		emX8664  = 62 // x86-64
		ptLoad   = 1
		pfRX     = 5 // read and execute
	)
	code := []byte{
		0xb8, 34, 0, 0, 0, // mov eax, 34 (pause)
		0x0f, 0x05, // syscall
		0xeb, 0xf7, // jmp back to the mov (-9 bytes)
	}
	size := uint64(codeOff + len(code))
	var b bytes.Buffer
	le := binary.LittleEndian
	w := func(v any) { _ = binary.Write(&b, le, v) }
	// ELF header.
	b.Write([]byte{0x7f, 'E', 'L', 'F', elfClass, elfData, 1, 0})
	b.Write(make([]byte, 8))
	w(uint16(etExec))
	w(uint16(emX8664))
	w(uint32(1))              // version
	w(uint64(base + codeOff)) // entry
	w(uint64(ehSize))         // program headers' offset
	w(uint64(0))              // section headers' offset: none
	w(uint32(0))              // flags
	w(uint16(ehSize))
	w(uint16(phSize))
	w(uint16(1)) // one program header
	w(uint16(0)) // section header size, count, names' index: none
	w(uint16(0))
	w(uint16(0))
	// The one program header: load the whole file, read and execute.
	w(uint32(ptLoad))
	w(uint32(pfRX))
	w(uint64(0))    // offset
	w(uint64(base)) // virtual address
	w(uint64(base)) // physical address
	w(size)         // size in the file
	w(size)         // size in memory
	w(uint64(0x1000))
	b.Write(code)
	return b.Bytes()
}
