package ca

import (
	"fmt"

	"github.com/spf13/cobra"
)

// Command is dfdaemon's gen-ca (v1's): it makes the CA that hijack_https
// signs intercepted hosts' certificates with.
func Command() *cobra.Command {
	var certPath, keyPath string
	var o GenerateOptions
	cmd := &cobra.Command{
		Use:   "gen-ca",
		Short: "Make the CA certificate and key for hijack_https",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The flag's default is DefaultValidity, so zero or less was
			// asked for: Generate would read zero as its default.
			if o.Validity <= 0 {
				return fmt.Errorf("gen-ca: --expire-duration %v: want a positive duration", o.Validity)
			}
			if err := Generate(certPath, keyPath, o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA certificate %s, key %s\n", certPath, keyPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&certPath, "cert-output", "", "where to write the CA certificate (PEM)")
	f.StringVar(&keyPath, "key-output", "", "where to write the CA private key (PEM, mode 0600); not the certificate's path")
	f.StringVar(&o.CommonName, "common-name", "", "subject common name (default \"dfdaemon CA <hostname>\")")
	f.DurationVar(&o.Validity, "expire-duration", DefaultValidity, "validity, positive")
	f.BoolVar(&o.Overwrite, "overwrite", false, "replace existing files")
	f.StringVar(&o.KeyType, "key-type", KeyECDSA, "key type: ecdsa (P-256) or rsa")
	f.IntVar(&o.RSABits, "rsa-bits", MinRSABits,
		fmt.Sprintf("RSA key size with --key-type rsa, %d..%d", MinRSABits, MaxRSABits))
	return cmd
}
