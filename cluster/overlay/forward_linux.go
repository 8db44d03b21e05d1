package overlay

import (
	"errors"
	"fmt"
	"net/netip"
)

// ServiceRuleComment tags (with ":<cluster cidr>" after it) the iptables
// rule that lets translated service traffic through Docker's FORWARD chain.
const ServiceRuleComment = "dev-services"

// serviceRule accepts, in Docker's DOCKER-USER chain, both directions of a
// connection that the service data path translated to a pod (its reply
// source is in the cluster CIDR): Docker's FORWARD policy drops traffic
// entering its bridges from elsewhere, such as a client of a published port
// on another interface or on another node.
//
//	filter DOCKER-USER: -m conntrack --ctstate DNAT --ctreplsrc <cluster cidr> -j ACCEPT
func serviceRule(cluster netip.Prefix) iptRule {
	tag := ServiceRuleComment + ":" + cluster.Masked().String() // one per pod network
	return iptRule{table: "filter", chain: "DOCKER-USER", comment: tag, createChain: true,
		spec: []string{"-m", "conntrack", "--ctstate", "DNAT", "--ctreplsrc", cluster.Masked().String(),
			"-m", "comment", "--comment", tag, "-j", "ACCEPT"}}
}

// EnsureServiceForwarding adds (or repairs) the rule that lets translated
// service traffic through Docker's FORWARD chain. Idempotent.
func EnsureServiceForwarding(cluster netip.Prefix) error {
	if !cluster.Addr().Is4() {
		return errors.New("ensure service forwarding: the cluster cidr is not IPv4")
	}
	if err := ensureRule(serviceRule(cluster)); err != nil {
		return fmt.Errorf("ensure service forwarding rule: %w", err)
	}
	return nil
}

// RemoveServiceForwarding removes that rule; a missing rule is no error.
func RemoveServiceForwarding(cluster netip.Prefix) error {
	if err := removeRules(serviceRule(cluster)); err != nil {
		return fmt.Errorf("remove service forwarding rule: %w", err)
	}
	return nil
}
