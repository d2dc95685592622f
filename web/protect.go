package web

import (
	"fmt"
	"net/http"
)

// CrossOrigin refuses, with 403, a state-changing request (any method but
// GET, HEAD and OPTIONS) that a browser sends from another site: the
// browser would attach the credentials it holds for rollguard (basic auth,
// a client certificate), so without this check any page a logged-in user
// opens could announce deployments, approve commands or reload the
// configuration (cross-site request forgery). Browsers say where a request
// comes from (Sec-Fetch-Site, or Origin against Host); a request without
// either is from a program, which credentials alone authorise, so the CLI,
// curl, CI jobs and remote-write senders are unaffected.
func CrossOrigin(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("cross-origin %s refused: a page on another site (Origin %q) cannot change rollguard; "+
			"use rollguard's own pages, the rollguard CLI or a client that is not a browser", r.Method, r.Header.Get("Origin")))
	}))
	return p.Handler(next)
}
