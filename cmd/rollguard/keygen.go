package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/rollguard/rollguard/actions/wire"
)

type keygenOptions struct {
	seedFile, publicKeyFile string
	force                   bool
	namespace, secret       string
}

// addKeygenCommand registers `rollguard keygen`, which writes the signing
// seed that playbook.signing.seed_file and `actuate --sign.seed-file` read.
func addKeygenCommand(app *kingpin.Application) (*kingpin.CmdClause, func(stdout, stderr io.Writer) int) {
	var o keygenOptions
	cmd := app.Command("keygen", "Write a new signing key: an nkey user seed (\"SU…\", mode 0600) for playbook.signing.seed_file or actuate --sign.seed-file, and its public key (\"U…\") for actuate --verify.key-file.")
	cmd.Flag("seed-file", "Where to write the seed.").Required().StringVar(&o.seedFile)
	cmd.Flag("public-key-file", "Where to write the public key (default: the seed file's name with .pub).").StringVar(&o.publicKeyFile)
	cmd.Flag("force", "Replace existing files; actuators that trust the old public key then refuse what the new one signs.").BoolVar(&o.force)
	cmd.Flag("kubernetes.namespace", "Namespace in the printed kubectl command.").Default("rollguard").StringVar(&o.namespace)
	cmd.Flag("kubernetes.secret", "Secret name in the printed kubectl command (the one deploy/kubernetes and the Helm chart mount).").Default("rollguard-signing-key").StringVar(&o.secret)
	return cmd, func(stdout, stderr io.Writer) int {
		if o.publicKeyFile == "" {
			o.publicKeyFile = strings.TrimSuffix(o.seedFile, filepath.Ext(o.seedFile)) + ".pub"
		}
		pub, err := wire.GenerateKeyFiles(o.seedFile, o.publicKeyFile, o.force)
		if err != nil {
			fmt.Fprintf(stderr, "rollguard: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "seed:       %s (keep it secret; every central replica needs the same one)\n", o.seedFile)
		fmt.Fprintf(stdout, "public key: %s in %s (actuators trust it with --verify.key-file)\n", pub, o.publicKeyFile)
		fmt.Fprintf(stdout, "Kubernetes Secret for deploy/kubernetes and the Helm chart:\n")
		fmt.Fprintf(stdout, "  kubectl -n %s create secret generic %s --from-file=seed.nk=%s --from-file=seed.pub=%s\n",
			shellQuote(o.namespace), shellQuote(o.secret), shellQuote(o.seedFile), shellQuote(o.publicKeyFile))
		return 0
	}
}

// shellQuote quotes s for a POSIX shell where it needs quoting, so that the
// printed command runs as printed.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
