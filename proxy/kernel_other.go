//go:build !linux

package proxy

import (
	"errors"
	"fmt"
	"runtime"
)

// NFTables is the kernel data path; it exists on Linux only.
type NFTables struct{}

var _ Kernel = (*NFTables)(nil)

var errUnsupported = fmt.Errorf("the service data path needs Linux nftables (this is %s): run the agent on Linux", runtime.GOOS)

// NewNFTables returns a data path that reports it is unsupported here.
func NewNFTables(Config) *NFTables { return &NFTables{} }

// Apply implements Kernel.
func (*NFTables) Apply([]Service) error { return errUnsupported }

// Rules implements Kernel: nothing is programmed here.
func (*NFTables) Rules() int { return 0 }

// FlushStale implements Kernel.
func (*NFTables) FlushStale() {}

// Check implements Kernel.
func (*NFTables) Check() error { return errUnsupported }

// Teardown implements Kernel.
func (*NFTables) Teardown() error { return errors.Join() }
