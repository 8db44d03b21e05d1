package docker

import (
	"bytes"
	"encoding/binary"
)

// pauseELF is the whole program of a pod's infra container on amd64, as a
// static ELF executable of 220 bytes. It holds the pod's namespaces and
// does little else, as Kubernetes' pause container does in C:
//
//   - it blocks SIGCHLD, SIGTERM and SIGINT and waits for one of them
//     (rt_sigtimedwait), so it sleeps without a wakeup until one comes;
//   - on SIGCHLD it reaps every exited child (wait4 with WNOHANG): as PID 1
//     of a pod whose containers share its PID namespace, the orphans of
//     those containers land on it;
//   - on SIGTERM or SIGINT it exits with status 0. (Blocked signals are
//     queued even for the init of a PID namespace, which the kernel
//     otherwise shields from signals it has no handler for.)
//
// Its memory is one page of code and a stack, against some 4 MiB for the
// dev binary's own `pause` (package initialisation), which does the same
// and runs on other architectures. The source is in the comments below;
// `as` and `objdump -d` reproduce the bytes.
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
		// _start: rt_sigprocmask(SIG_BLOCK, &set, NULL, 8)
		0xb8, 0x0e, 0x00, 0x00, 0x00, // mov $14, %eax
		0x31, 0xff, // xor %edi, %edi
		0x48, 0x8d, 0x35, 0x4e, 0x00, 0x00, 0x00, // lea set(%rip), %rsi
		0x31, 0xd2, // xor %edx, %edx
		0x41, 0xba, 0x08, 0x00, 0x00, 0x00, // mov $8, %r10d
		0x0f, 0x05, // syscall
		// reap (0x18): wait4(-1, NULL, WNOHANG, NULL) until none is left
		0xb8, 0x3d, 0x00, 0x00, 0x00, // mov $61, %eax
		0x48, 0x83, 0xcf, 0xff, // or $-1, %rdi
		0x31, 0xf6, // xor %esi, %esi
		0xba, 0x01, 0x00, 0x00, 0x00, // mov $1, %edx
		0x45, 0x31, 0xd2, // xor %r10d, %r10d
		0x0f, 0x05, // syscall
		0x48, 0x85, 0xc0, // test %rax, %rax
		0x7f, 0xe6, // jg reap: reaped one, look for another
		// wait (0x32): rt_sigtimedwait(&set, NULL, NULL, 8)
		0xb8, 0x80, 0x00, 0x00, 0x00, // mov $128, %eax
		0x48, 0x8d, 0x3d, 0x1e, 0x00, 0x00, 0x00, // lea set(%rip), %rdi
		0x31, 0xf6, // xor %esi, %esi
		0x31, 0xd2, // xor %edx, %edx
		0x41, 0xba, 0x08, 0x00, 0x00, 0x00, // mov $8, %r10d
		0x0f, 0x05, // syscall
		0x83, 0xf8, 0x11, // cmp $17 (SIGCHLD), %eax
		0x74, 0xc9, // je reap
		0x85, 0xc0, // test %eax, %eax
		0x78, 0xdf, // js wait: interrupted, wait again
		// SIGTERM or SIGINT: exit(0)
		0xb8, 0x3c, 0x00, 0x00, 0x00, // mov $60, %eax
		0x31, 0xff, // xor %edi, %edi
		0x0f, 0x05, // syscall
		// set (0x5c): SIGINT (2), SIGTERM (15), SIGCHLD (17), as bits n-1
		0x02, 0x40, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
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
