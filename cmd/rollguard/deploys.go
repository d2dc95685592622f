package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rollguard/rollguard/web"
)

// maxDeployMessage bounds a deployment announcement on NATS.
const maxDeployMessage = 1 << 20

// subscribeDeploys announces the deployments published on
// <prefix>.deploy.<service>, in the body format of POST /api/v1/deployments.
// A request (a message with a reply subject) is answered with the
// deployment or the error.
func (d *daemon) subscribeDeploys(prefix string) (*nats.Subscription, error) {
	log := d.log.Named("deploys")
	return d.nc.Subscribe(prefix+".deploy.*", func(m *nats.Msg) {
		service := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		dep, err := web.DecodeAnnouncement(io.LimitReader(bytes.NewReader(m.Data), maxDeployMessage))
		switch {
		case err != nil:
		case len(m.Data) > maxDeployMessage:
			err = fmt.Errorf("announcement larger than %d bytes", maxDeployMessage)
		case dep.Service == "":
			dep.Service = service
		case dep.Service != service:
			err = fmt.Errorf("service %q does not match the subject's %q", dep.Service, service)
		}
		if err == nil {
			dep, err = d.engine.Announce(dep)
			if err != nil {
				err = errors.New(web.AnnounceError(err))
			}
		}
		reply := map[string]any{"status": "ok", "deployment": dep}
		if err != nil {
			log.Warn("deployment announcement refused", "subject", m.Subject, "error", err)
			reply = map[string]any{"status": "error", "error": err.Error()}
		} else {
			log.Info("deployment announced", "deployment", dep.ID, "service", dep.Service, "version", dep.Version)
		}
		if m.Reply != "" {
			b, _ := json.Marshal(reply)
			_ = m.Respond(b)
		}
	})
}

// deployOptions are the flags of `rollguard deploy`.
type deployOptions struct {
	url, tokenFile, username, passwordFile string
	body                                   map[string]any
}

// announce posts a deployment to a running rollguard and prints it.
func announce(o deployOptions, stdout io.Writer) error {
	b, _ := json.Marshal(o.body)
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(o.url, "/")+"/api/v1/deployments", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case o.tokenFile != "":
		tok, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	case o.username != "":
		pw, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return err
		}
		req.SetBasicAuth(o.username, strings.TrimSpace(string(pw)))
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("announce deployment: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("announce deployment: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("announce deployment: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	_, err = stdout.Write(body)
	return err
}
