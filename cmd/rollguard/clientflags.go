package main

import (
	"errors"
	"fmt"

	"github.com/alecthomas/kingpin/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	commoncfg "github.com/prometheus/common/config"

	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/configs"
)

// natsClient is how rollguard's NATS client commands (actuate, notify)
// reach the server and rollguard's stream: the same flags for each.
type natsClient struct {
	url, user, password, token, creds string
	prefix, stream                    string
}

// flags registers the connection flags on cmd; streamHelp says what the
// command reads from the stream.
func (n *natsClient) flags(cmd *kingpin.CmdClause, defaultPrefix, defaultStream, streamHelp string) {
	cmd.Flag("nats.url", "NATS server URL.").Default("nats://127.0.0.1:4222").StringVar(&n.url)
	cmd.Flag("nats.user", "NATS user.").StringVar(&n.user)
	cmd.Flag("nats.password", "NATS password.").StringVar(&n.password)
	cmd.Flag("nats.token", "NATS token.").StringVar(&n.token)
	cmd.Flag("nats.creds", "NATS credentials file (JWT and nkey seed).").StringVar(&n.creds)
	cmd.Flag("nats.subject-prefix", "First token of rollguard's subjects.").Default(defaultPrefix).StringVar(&n.prefix)
	cmd.Flag("nats.stream", streamHelp).Default(defaultStream).StringVar(&n.stream)
}

// connect connects as the daemon does.
func (n natsClient) connect(log hclog.Logger) (*nats.Conn, error) {
	return connectNATS(n.url, configs.NATSConfig{User: n.user, Password: commoncfg.Secret(n.password),
		Token: commoncfg.Secret(n.token), CredentialsFile: n.creds}, log)
}

// logFlags are the log flags of every rollguard command that runs.
type logFlags struct{ level, format string }

func (l *logFlags) flags(cmd *kingpin.CmdClause) {
	cmd.Flag("log.level", "Only log messages at or above this level: debug, info, warn, error.").Default("info").EnumVar(&l.level, "debug", "info", "warn", "error")
	cmd.Flag("log.format", "Log format: logfmt (key=value text) or json.").Default("logfmt").EnumVar(&l.format, "logfmt", "json")
}

// trustedVerifier builds the verifier of the keys given by --verify.key
// and --verify.key-file; why says, when none is given, why one is needed.
func trustedVerifier(keys, keyFiles []string, why string) (*wire.Verifier, error) {
	fromFiles, err := wire.ReadKeyFiles(keyFiles...)
	if err != nil {
		return nil, fmt.Errorf("--verify.key-file: %w", err)
	}
	all := append(append([]string(nil), keys...), fromFiles...)
	if len(all) == 0 {
		return nil, errors.New("no trusted key: " + why + "; " +
			"pass --verify.key=U… or --verify.key-file=<rollguard storage.path>/signing.pub")
	}
	v, err := wire.NewVerifier(all...)
	if err != nil {
		return nil, fmt.Errorf("--verify.key: %w", err)
	}
	return v, nil
}
