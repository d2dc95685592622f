package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// daemonClient reaches a running rollguard's web API, with the same flags and
// credentials as `rollguard deploy`.
type daemonClient struct {
	url, tokenFile, username, passwordFile string
}

// defaultWebURL is where `rollguard run` serves its API by default.
const defaultWebURL = "http://127.0.0.1:9469"

func addDaemonClientFlags(cmd *kingpin.CmdClause, c *daemonClient) {
	// kingpin sets no default at all when the command line has a flag
	// named version (it takes it for the application's --version), and
	// `rollguard deploy --version=…` always has one: start from the default.
	c.url = defaultWebURL
	cmd.Flag("web.url", "rollguard's web address.").Default(defaultWebURL).StringVar(&c.url)
	cmd.Flag("web.bearer-token-file", "File with the bearer token the web listener requires.").StringVar(&c.tokenFile)
	cmd.Flag("web.username", "Basic-auth user the web listener requires.").StringVar(&c.username)
	cmd.Flag("web.password-file", "File with the basic-auth password.").StringVar(&c.passwordFile)
}

// do sends a request with the configured credentials. An error means
// rollguard was not reached (or the credentials could not be read); any
// HTTP answer is returned for the caller to judge.
func (c daemonClient) do(method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	base := strings.TrimRight(c.url, "/")
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		return nil, fmt.Errorf("--web.url %q: %w", c.url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case c.tokenFile != "":
		tok, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read --web.bearer-token-file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	case c.username != "":
		pw, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("read --web.password-file: %w", err)
		}
		req.SetBasicAuth(c.username, strings.TrimSpace(string(pw)))
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach rollguard at %s (is `rollguard run` listening there? see --web.url): %w", base, err)
	}
	return resp, nil
}

// daemonError turns a refusal into the server's message and status.
func daemonError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

// addIncidentCommands adds `rollguard postmortem`, `rollguard approve` and
// `rollguard incident close|ack`; it returns what to run, by full command name.
func addIncidentCommands(app *kingpin.Application) map[string]func(stdout, stderr io.Writer) int {
	pmCmd := app.Command("postmortem", "Print the post-mortem draft (Markdown) of an incident from a running rollguard.")
	var pc daemonClient
	addDaemonClientFlags(pmCmd, &pc)
	pmID := pmCmd.Arg("id", "The incident id, like inc-d-3fa2b1c0d4e5 (GET /api/v1/incidents lists them).").Required().String()

	apCmd := app.Command("approve", "Approve held commands of a running rollguard: a command id, or an incident id for all it holds.")
	var ac daemonClient
	addDaemonClientFlags(apCmd, &ac)
	apID := apCmd.Arg("id", "A command id (d-…/action/target) or an incident id (inc-d-…).").Required().String()
	apBy := apCmd.Flag("by", "Who approves; recorded in the incident (default: your login name).").String()

	incCmd := app.Command("incident", "A person's decision on an incident of a running rollguard.")
	var hc daemonClient
	var hID, hBy, hReason string
	humans := map[string]*kingpin.CmdClause{}
	for _, verb := range []struct{ name, help string }{
		{"close", "Close an open incident (an escalated one, say, once people have dealt with it); held commands are cancelled and the deployment goes on as a new generation."},
		{"ack", "Acknowledge an incident: record that you have it in hand (rollguard goes on acting)."},
	} {
		c := incCmd.Command(verb.name, verb.help)
		addDaemonClientFlags(c, &hc)
		c.Arg("id", "The incident id, like inc-d-3fa2b1c0d4e5 (GET /api/v1/incidents lists them).").Required().StringVar(&hID)
		c.Flag("by", "Who decides; recorded in the incident (default: your login name).").StringVar(&hBy)
		reason := c.Flag("reason", "Why; recorded in the incident and the post-mortem.")
		if verb.name == "close" {
			reason = reason.Required()
		}
		reason.StringVar(&hReason)
		humans[verb.name] = c
	}

	report := func(what string, err error, stderr io.Writer) int {
		if err != nil {
			fmt.Fprintf(stderr, "rollguard: %s: %v\n", what, err)
			return 1
		}
		return 0
	}
	return map[string]func(stdout, stderr io.Writer) int{
		pmCmd.FullCommand(): func(stdout, stderr io.Writer) int {
			return report("postmortem", printPostmortem(pc, *pmID, stdout), stderr)
		},
		apCmd.FullCommand(): func(stdout, stderr io.Writer) int {
			return report("approve", approveCommands(ac, *apID, *apBy, stdout), stderr)
		},
		humans["close"].FullCommand(): func(stdout, stderr io.Writer) int {
			return report("incident close", decideIncident(hc, "close", hID, hBy, hReason, stdout), stderr)
		},
		humans["ack"].FullCommand(): func(stdout, stderr io.Writer) int {
			return report("incident ack", decideIncident(hc, "ack", hID, hBy, hReason, stdout), stderr)
		},
	}
}

// decideIncident sends a person's close or acknowledgement and prints the
// incident's state afterwards.
func decideIncident(c daemonClient, verb, id, by, reason string, stdout io.Writer) error {
	if strings.Contains(id, "/") {
		return fmt.Errorf("%q is not an incident id: incident %s takes one like inc-d-3fa2b1c0d4e5, not a command id", id, verb)
	}
	if by == "" {
		by = loginName()
	}
	if by == "" {
		return errors.New("cannot tell who you are: say who decides with --by")
	}
	body, _ := json.Marshal(map[string]string{"by": by, "reason": reason})
	resp, err := c.do(http.MethodPost, "/api/v1/incidents/"+url.PathEscape(id)+"/"+verb, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return daemonError(resp)
	}
	var inc struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&inc); err != nil || inc.ID == "" {
		return fmt.Errorf("%s answered with something other than an incident", c.url)
	}
	_, err = fmt.Fprintf(stdout, "%s %s\n", inc.ID, inc.State)
	return err
}

// printPostmortem prints an incident's post-mortem draft.
func printPostmortem(c daemonClient, id string, stdout io.Writer) error {
	if strings.Contains(id, "/") {
		return fmt.Errorf("%q is not an incident id: postmortem takes one like inc-d-3fa2b1c0d4e5, not a command id", id)
	}
	resp, err := c.do(http.MethodGet, "/api/v1/incidents/"+url.PathEscape(id)+"/postmortem", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return daemonError(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/markdown" {
		return fmt.Errorf("%s answered with %q, not a post-mortem: is --web.url a rollguard?", c.url, resp.Header.Get("Content-Type"))
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}

// approveCommands releases held commands and prints their ids, one a line.
func approveCommands(c daemonClient, id, by string, stdout io.Writer) error {
	if by == "" {
		by = loginName()
	}
	if by == "" {
		return errors.New("cannot tell who you are: say who approves with --by")
	}
	body, _ := json.Marshal(map[string]string{"id": id, "by": by})
	resp, err := c.do(http.MethodPost, "/api/v1/approvals", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return daemonError(resp)
	}
	var out struct {
		Approved []string `json:"approved"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return fmt.Errorf("%s answered with something other than an approval: %w", c.url, err)
	}
	for _, a := range out.Approved {
		if _, err := fmt.Fprintln(stdout, a); err != nil {
			return err
		}
	}
	return nil
}

// loginName is who runs the command: $USER (or %USERNAME%), else the
// account's name.
func loginName() string {
	for _, k := range []string{"USER", "USERNAME"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
