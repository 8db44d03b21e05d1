package cli

import (
	"github.com/spf13/cobra"
)

// NewCACommand is `dev ca`: the cluster's local HTTPS CA.
func NewCACommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The cluster's local HTTPS CA, which signs the ingress certificates of tls: local routes",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "export",
		Short: "Print the local HTTPS CA's certificate (PEM), to trust in a browser or with curl --cacert",
		Long: `Print the certificate of the cluster's local HTTPS CA. The ingress router
serves routes with tls: local (the default for hosts under .localhost) with
certificates it signs, so https://web.hello.localhost works once it is
trusted:

  dev ca export > dev-ca.pem
  curl --cacert dev-ca.pem https://web.hello.localhost/

It is not the cluster's CA: trusting it trusts no node or client
certificate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			pem, err := c.LocalCA(cmd.Context())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		},
	})
	return cmd
}
