// Package overlay programs the host side of the pod network: the VXLAN
// overlay between nodes and the iptables rules that let pod and service
// traffic through Docker's FORWARD chain. The Linux implementation is in
// _linux.go files.
package overlay
