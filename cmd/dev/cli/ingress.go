package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/devhq/dev/cluster/api"
)

// ingressRow is one route as `dev ingress` lists it.
type ingressRow struct {
	api.IngressRoute
	Project   string `json:"project"`
	Service   string `json:"service"`
	Ready     int    `json:"ready"`
	Desired   int    `json:"desired"`
	Endpoints int    `json:"endpoints"` // ready pods the routers send to, any template
	// Cert is the state of the host's certificate: the local CA's for
	// tls: local, the ACME CA's ("pending", "valid until ...") for auto.
	Cert string `json:"cert"`
}

// certOf says where route r's certificate comes from, and for tls: auto
// its state (certs: the service's, by host).
func certOf(r api.IngressRoute, certs map[string]string) string {
	switch r.TLS {
	case api.IngressTLSLocal:
		return "local CA"
	case api.IngressTLSAuto:
		if s, ok := certs[r.Host]; ok {
			return s
		}
		return "pending"
	}
	return "-"
}

// NewIngressCommand is `dev ingress` (alias `dev routes`).
func NewIngressCommand(g *globals) *cobra.Command {
	var (
		pf     projectFlags
		output string
	)
	cmd := &cobra.Command{
		Use:     "ingress",
		Aliases: []string{"routes"},
		Short:   "List the HTTP routes (compose x-ingress) every node's ingress router serves, with their services' ready pods",
		Long: `List the HTTP routes that every node's ingress router serves (the compose
extension x-ingress): requests for HOST whose path starts with PATH go to a
ready pod of SERVICE on PORT. The router listens on each node's
--ingress-addr (:80 by default) and --ingress-tls-addr (:443) for HTTPS:
routes with tls: local (hosts under .localhost) get certificates of the
cluster's local CA (dev ca export), routes with tls: auto (the default for
other hosts) certificates from an ACME CA (Let's Encrypt, or the agents'
--acme-ca), which the leader obtains and renews and every node serves.
CERTIFICATE shows where each comes from and, for tls: auto, until when it
is valid ("pending" until the CA has issued it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := checkOutput(output); err != nil {
				return err
			}
			name, c, err := pf.connect(ctx, g, true)
			if err != nil {
				return err
			}
			svcs, err := c.Services(ctx, name)
			if err != nil {
				return err
			}
			rows := []ingressRow{}
			for _, s := range svcs {
				for _, r := range s.Ingress {
					rows = append(rows, ingressRow{IngressRoute: r, Project: s.Project, Service: s.Name,
						Ready: s.Ready, Desired: s.Desired, Endpoints: len(s.Endpoints), Cert: certOf(r, s.Certs)})
				}
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tPATH\tPROJECT\tSERVICE\tPORT\tTLS\tREADY\tCERTIFICATE")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d/%d\t%s\n", r.Host, r.Path, r.Project, r.Service, r.Port, r.TLS, r.Ready, r.Desired, r.Cert)
			}
			return tw.Flush()
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
