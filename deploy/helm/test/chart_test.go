package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../rollguard"

// rendered is what the chart made for one set of values, decoded.
type rendered struct {
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	services        map[string]*corev1.Service
	statefulSets    []*appsv1.StatefulSet
	deployments     []*appsv1.Deployment
	serviceMonitors []*monitoringv1.ServiceMonitor
	pdbs            []*policyv1.PodDisruptionBudget
	notes           string
}

// render renders the chart as `helm install rg deploy/helm/rollguard -n
// rollguard` would with these values over values.yaml (through the
// chart's schema), then decodes every object strictly.
func render(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	return renderRelease(t, "rg", vals)
}

func renderRelease(t *testing.T, release string, vals map[string]any) *rendered {
	t.Helper()
	out, err := renderChartRelease(release, vals)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}, services: map[string]*corev1.Service{}}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			r.notes = out[name]
			continue
		}
		for i, doc := range splitDocs(out[name]) {
			if err := r.decode(doc); err != nil {
				t.Fatalf("%s, document %d: %v\n%s", name, i, err, doc)
			}
		}
	}
	return r
}

func renderChart(vals map[string]any) (map[string]string, error) {
	return renderChartRelease("rg", vals)
}

func renderChartRelease(release string, vals map[string]any) (map[string]string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	top, err := util.ToRenderValuesWithSchemaValidation(ch, vals, common.ReleaseOptions{Name: release, Namespace: "rollguard", IsInstall: true, Revision: 1}, common.DefaultCapabilities, false)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, top)
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func splitDocs(s string) []string {
	var docs []string
	for _, d := range docSep.Split(s, -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// decode decodes one object into its API type; a field the type does not
// have, a wrong type or an unknown kind is an error.
func (r *rendered) decode(doc string) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return err
	}
	strict := func(into any) error { return yaml.UnmarshalStrict([]byte(doc), into) }
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		if err := strict(o); err != nil {
			return err
		}
		r.configMaps[o.Name] = o
	case "v1 Secret":
		o := &corev1.Secret{}
		if err := strict(o); err != nil {
			return err
		}
		r.secrets[o.Name] = o
	case "v1 Service":
		o := &corev1.Service{}
		if err := strict(o); err != nil {
			return err
		}
		r.services[o.Name] = o
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		if err := strict(o); err != nil {
			return err
		}
		r.statefulSets = append(r.statefulSets, o)
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		if err := strict(o); err != nil {
			return err
		}
		r.deployments = append(r.deployments, o)
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		if err := strict(o); err != nil {
			return err
		}
		r.pdbs = append(r.pdbs, o)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		o := &monitoringv1.ServiceMonitor{}
		if err := strict(o); err != nil {
			return err
		}
		r.serviceMonitors = append(r.serviceMonitors, o)
	default:
		return fmt.Errorf("unexpected object %s %s", tm.APIVersion, tm.Kind)
	}
	return nil
}

// TestStrictDecoding is the strictness's healthy twin: the decoder the
// chart's tests use refuses a field the API type lacks.
func TestStrictDecoding(t *testing.T) {
	good := "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  replicas: 3\n"
	r := &rendered{}
	if err := r.decode(good); err != nil || r.statefulSets[0].Spec.Replicas == nil || *r.statefulSets[0].Spec.Replicas != 3 {
		t.Fatalf("a valid StatefulSet: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(good, "replicas: 3", "replica: 3", 1),
		strings.Replace(good, "replicas: 3", "replicas: three", 1),
		strings.Replace(good, "kind: StatefulSet", "kind: StatefullSet", 1),
	} {
		if err := (&rendered{}).decode(bad); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}

func TestChartStandalone(t *testing.T) {
	r := render(t, nil)
	sts := only(t, r.statefulSets)
	if *sts.Spec.Replicas != 1 {
		t.Errorf("standalone replicas %d, want 1", *sts.Spec.Replicas)
	}
	pod := &sts.Spec.Template.Spec
	c := container(t, pod, "rollguard")
	checkCommon(t, r, pod, c)
	if env(c, "ROLLGUARD_REPLICA_ID") != nil {
		t.Error("a standalone rollguard is given a replica id")
	}
	if len(r.deployments) != 0 || len(r.serviceMonitors) != 0 || len(r.pdbs) != 0 {
		t.Errorf("standalone rendered %d Deployments, %d ServiceMonitors (off by default), %d PodDisruptionBudgets", len(r.deployments), len(r.serviceMonitors), len(r.pdbs))
	}
	cfg := config(t, r)
	if _, ok := cfg["nats"]; ok {
		t.Errorf("standalone without nats.url sets nats (it should embed it): %v", cfg["nats"])
	}
	if _, ok := cfg["playbook"]; ok || volume(pod, "rollguard-signing") != nil {
		t.Errorf("standalone without a signing Secret is given one (it should make its own key): %v", cfg["playbook"])
	}
	if sts.Spec.VolumeClaimTemplates[0].Name != "rollguard-data" {
		t.Errorf("no persistent volume for the data")
	}
	checkService(t, r, "rg-rollguard")
	checkConfigValid(t, r, "")
}

func TestChartCentral(t *testing.T) {
	r := render(t, map[string]any{
		"topology": "central",
		"signing":  map[string]any{"secretName": "rollguard-signing-key"},
		"nats": map[string]any{
			"url":         "nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222",
			"credentials": map[string]any{"secretName": "rollguard-nats-creds"},
		},
		"web":            map[string]any{"credentials": map[string]any{"secretName": "rollguard-web"}},
		"serviceMonitor": map[string]any{"enabled": true},
	})
	sts := only(t, r.statefulSets)
	if *sts.Spec.Replicas != 3 {
		t.Errorf("central replicas %d, want 3", *sts.Spec.Replicas)
	}
	pod := &sts.Spec.Template.Spec
	c := container(t, pod, "rollguard")
	checkCommon(t, r, pod, c)
	if e := env(c, "ROLLGUARD_REPLICA_ID"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("replica id is not the pod name: %+v", e)
	}
	cfg := config(t, r)
	nats, _ := cfg["nats"].(map[string]any)
	if nats["replicas"] != float64(3) || !strings.HasPrefix(fmt.Sprint(nats["url"]), "nats://nats-0.nats:4222") {
		t.Errorf("nats: %v", nats)
	}
	if cl, _ := cfg["cluster"].(map[string]any); cl["lease_ttl"] != "15s" {
		t.Errorf("cluster: %v", cfg["cluster"])
	}
	checkService(t, r, "rg-rollguard")
	pdb := only(t, r.pdbs)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || !labelsMatch(pdb.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget %+v", pdb.Spec)
	}
	sm := only(t, r.serviceMonitors)
	if ep := sm.Spec.Endpoints; len(ep) != 1 || ep[0].Port != "web" || ep[0].Path != "/metrics" ||
		ep[0].Authorization == nil || ep[0].Authorization.Credentials.Name != "rollguard-web" {
		t.Errorf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
	}
	// It selects the Service with the web port, not the headless one too.
	n := 0
	for _, s := range r.services {
		if labelsMatch(sm.Spec.Selector.MatchLabels, s.Labels) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the ServiceMonitor selects %d Services, want 1", n)
	}
	checkConfigValid(t, r, "rg-rollguard-0")
}

func TestChartSidecar(t *testing.T) {
	r := render(t, map[string]any{
		"topology": "sidecar",
		"nats":     map[string]any{"url": "nats://nats.rollguard:4222"},
		"sidecar": map[string]any{"containers": []any{map[string]any{
			"name": "checkout", "image": "example.com/shop/checkout:v2.4.0",
			"env": []any{map[string]any{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://127.0.0.1:4318"}},
		}}},
	})
	if len(r.statefulSets) != 0 || len(r.services) != 0 {
		t.Errorf("sidecar rendered %d StatefulSets and %d Services", len(r.statefulSets), len(r.services))
	}
	d := only(t, r.deployments)
	pod := &d.Spec.Template.Spec
	container(t, pod, "checkout")
	c := container(t, pod, "rollguard")
	checkCommon(t, r, pod, c)
	cfg := config(t, r)
	if cfg["mode"] != "sidecar" {
		t.Errorf("mode %v", cfg["mode"])
	}
	if otlp, _ := cfg["otlp"].(map[string]any); otlp["http_listen_address"] != "127.0.0.1:4318" || otlp["grpc_listen_address"] != "127.0.0.1:4317" {
		t.Errorf("a sidecar's OTLP is not pod-local: %v", otlp)
	}
	if pb, ok := cfg["playbook"].(map[string]any); ok && pb["signing"] != nil {
		t.Errorf("a sidecar signs nothing but is given a seed: %v", pb)
	}
	checkConfigValid(t, r, "")

	// Bound to the loopback, the web listener cannot be probed by the kubelet.
	r = render(t, map[string]any{
		"topology": "sidecar",
		"nats":     map[string]any{"url": "nats://nats.rollguard:4222"},
		"sidecar": map[string]any{"webListenAddress": "127.0.0.1:9469", "containers": []any{map[string]any{
			"name": "checkout", "image": "example.com/shop/checkout:v2.4.0"}}},
	})
	c = container(t, &only(t, r.deployments).Spec.Template.Spec, "rollguard")
	if c.LivenessProbe != nil || c.ReadinessProbe != nil || !slices.Contains(c.Args, "--web.listen-address=127.0.0.1:9469") {
		t.Errorf("loopback web listener: probes %v %v, args %v", c.LivenessProbe, c.ReadinessProbe, c.Args)
	}
}

// TestChartInlineSeed: with signing.seed the chart creates the Secret the
// pods mount, holding the seed under the key the configuration names.
func TestChartInlineSeed(t *testing.T) {
	seed := "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4"
	r := render(t, map[string]any{"signing": map[string]any{"secretName": "", "seed": seed}})
	s := r.secrets["rg-rollguard-signing"]
	if s == nil || string(s.Data["seed.nk"]) != seed+"\n" {
		t.Fatalf("signing Secret: %+v", r.secrets)
	}
	pod := &only(t, r.statefulSets).Spec.Template.Spec
	checkCommon(t, r, pod, container(t, pod, "rollguard"))
}

// TestChartRefuses: values that cannot work fail the install with a
// message that says what to set; the defaults (the healthy twin) render.
func TestChartRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"unknown topology", map[string]any{"topology": "mesh"}, "topology"},
		{"central without NATS", map[string]any{"topology": "central", "signing": map[string]any{"secretName": "k"}}, "nats.url"},
		{"central without a shared seed", map[string]any{"topology": "central", "nats": map[string]any{"url": "nats://n:4222"}}, "signing"},
		{"sidecar without a service", map[string]any{"topology": "sidecar", "nats": map[string]any{"url": "nats://n:4222"}}, "sidecar.containers"},
		{"a port out of range", map[string]any{"listeners": map[string]any{"web": 70000}}, "web"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
	if _, err := renderChart(nil); err != nil {
		t.Fatalf("the defaults do not render: %v", err)
	}
}

// TestChartAgreesWithTheManifests: the chart runs the image deploy/kubernetes
// names, ghcr.io/rollguard/rollguard:<appVersion>.
func TestChartAgreesWithTheManifests(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	want := "ghcr.io/rollguard/rollguard:" + ch.Metadata.AppVersion
	files, _ := filepath.Glob("../../kubernetes/*.yaml")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`image:\s*(\S*rollguard/rollguard\S*)`).FindAllSubmatch(b, -1) {
			n++
			if string(m[1]) != want {
				t.Errorf("%s runs %s, the chart %s", f, m[1], want)
			}
		}
	}
	if n == 0 {
		t.Error("no rollguard image in deploy/kubernetes")
	}
}

// TestChartInstallInTheDocs: the `helm install` of docs/deploy.md, its --set
// flags parsed by Helm's own parser, renders a central cluster on the three
// NATS servers with the release's names and the manifests' signing Secret.
func TestChartInstallInTheDocs(t *testing.T) {
	b, err := os.ReadFile("../../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, cmd, ok := strings.Cut(string(b), "\nhelm install ")
	if !ok {
		t.Fatal("docs/deploy.md has no helm install")
	}
	// The command and its continuation lines.
	var words []string
	for line := range strings.Lines(cmd) {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		cont := strings.HasSuffix(line, "\\")
		words = append(words, strings.Fields(strings.TrimSuffix(line, "\\"))...)
		if !cont {
			break
		}
	}
	if len(words) < 2 || words[1] != "deploy/helm/rollguard" {
		t.Fatalf("helm install %v", words)
	}
	vals := map[string]any{}
	for i, w := range words {
		if w == "--set" && i+1 < len(words) {
			if err := strvals.ParseInto(strings.Trim(words[i+1], "'"), vals); err != nil {
				t.Fatalf("--set %s: %v", words[i+1], err)
			}
		}
	}
	r := renderRelease(t, words[0], vals)
	sts := only(t, r.statefulSets)
	if sts.Name != "rollguard" || *sts.Spec.Replicas != 3 {
		t.Errorf("StatefulSet %s with %d replicas, want rollguard with 3", sts.Name, *sts.Spec.Replicas)
	}
	// The Secret `rollguard keygen` prints and the manifests mount, as they do.
	central, err := os.ReadFile("../../kubernetes/rollguard-central.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v := volume(&sts.Spec.Template.Spec, "rollguard-signing")
	if v == nil || v.Secret == nil || !strings.Contains(string(central), "secretName: "+v.Secret.SecretName) ||
		!strings.Contains(string(central), "seed_file: /etc/rollguard/signing/seed.nk") {
		t.Errorf("the docs' chart mounts the signing Secret %+v, not the manifests' rollguard-signing-key with seed.nk", v)
	}
	nats, _ := config(t, r)["nats"].(map[string]any)
	if urls := strings.Split(fmt.Sprint(nats["url"]), ","); len(urls) != 3 || nats["credentials_file"] == nil {
		t.Errorf("nats %v, want three servers and a credentials file", nats)
	}
	checkConfigValid(t, r, "rollguard-0")
}

// checkCommon checks what every topology's rollguard container must have:
// the image, probes on the web port, non-root, and a mount for every file
// the configuration names, from a volume that provides it.
func checkCommon(t *testing.T, r *rendered, pod *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	ch, _ := loader.Load(chartDir)
	if want := "ghcr.io/rollguard/rollguard:" + ch.Metadata.AppVersion; c.Image != want {
		t.Errorf("image %s, want %s", c.Image, want)
	}
	webPort := int32(0)
	for _, p := range c.Ports {
		if p.Name == "web" {
			webPort = p.ContainerPort
		}
	}
	if webPort != 9469 || !slices.Contains(c.Args, fmt.Sprintf("--web.listen-address=:%d", webPort)) {
		t.Errorf("web port %d, args %v", webPort, c.Args)
	}
	for probe, want := range map[*corev1.Probe]string{c.LivenessProbe: "/-/healthy", c.ReadinessProbe: "/-/ready"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "web" {
			t.Errorf("probe %+v, want GET %s on web", probe, want)
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("rollguard's security context %+v, want non-root 65532 on a read-only root", sc)
	}
	if sc := pod.SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup != 65532 {
		t.Errorf("pod security context %+v, want fsGroup 65532 (the Secrets are mode 0440)", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	cfgFile := argValue(c.Args, "--config.file")
	files := map[string]bool{cfgFile: true}
	collectFiles(config(t, r), files)
	for f := range files {
		m := mountFor(c, path.Dir(f))
		if m == nil {
			t.Errorf("the configuration names %s, but nothing is mounted at %s", f, path.Dir(f))
			continue
		}
		v := volume(pod, m.Name)
		switch {
		case v == nil:
			t.Errorf("mount %s has no volume", m.Name)
		case v.Secret != nil:
			if s, ok := r.secrets[v.Secret.SecretName]; ok {
				if _, ok := s.Data[path.Base(f)]; !ok {
					t.Errorf("Secret %s has no key %s for %s", s.Name, path.Base(f), f)
				}
			}
		case v.ConfigMap != nil:
			cm := r.configMaps[v.ConfigMap.Name]
			if cm == nil || cm.Data[path.Base(f)] == "" {
				t.Errorf("ConfigMap %s has no key %s for %s", v.ConfigMap.Name, path.Base(f), f)
			}
		}
	}
	if sd := mountFor(c, "/data"); sd == nil || argValue(c.Args, "--storage.path") != "/data" {
		t.Errorf("storage: mount %v, args %v", sd, c.Args)
	}
}

// collectFiles adds every value of a key ending in _file to files.
func collectFiles(v any, files map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && strings.HasSuffix(k, "_file") {
				files[s] = true
			}
			collectFiles(x, files)
		}
	case []any:
		for _, x := range v {
			collectFiles(x, files)
		}
	}
}

func checkService(t *testing.T, r *rendered, name string) {
	t.Helper()
	s := r.services[name]
	if s == nil {
		t.Fatalf("no Service %s: %v", name, r.services)
	}
	ports := map[string]int32{}
	for _, p := range s.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if ports["web"] != 9469 || ports["otlp-grpc"] != 4317 || ports["otlp-http"] != 4318 {
		t.Errorf("Service ports %v", ports)
	}
	if h := r.services[name+"-headless"]; h == nil || h.Spec.ClusterIP != "None" {
		t.Errorf("no headless Service for the StatefulSet")
	}
}

func config(t *testing.T, r *rendered) map[string]any {
	t.Helper()
	cm := only(t, mapValues(r.configMaps))
	var cfg map[string]any
	if err := yaml.UnmarshalStrict([]byte(cm.Data["rollguard.yml"]), &cfg); err != nil {
		t.Fatalf("rollguard.yml: %v", err)
	}
	return cfg
}

var (
	rollguardOnce sync.Once
	rollguardBin  string
	rollguardErr  error
)

// checkConfigValid runs the rendered rollguard.yml through `rollguard
// check config`, built from this checkout, with the replica id a pod of
// the StatefulSet gets from its name.
func checkConfigValid(t *testing.T, r *rendered, replicaID string) {
	t.Helper()
	rollguardOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rollguard-chart")
		if err != nil {
			rollguardErr = err
			return
		}
		rollguardBin = filepath.Join(dir, "rollguard")
		cmd := exec.Command("go", "build", "-o", rollguardBin, "./cmd/rollguard")
		cmd.Dir = "../../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			rollguardErr = fmt.Errorf("build rollguard: %v\n%s", err, out)
		}
	})
	if rollguardErr != nil {
		t.Fatal(rollguardErr)
	}
	cfg := config(t, r)
	if replicaID != "" {
		cl, _ := cfg["cluster"].(map[string]any)
		cl["replica_id"] = replicaID
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "rollguard.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(rollguardBin, "check", "config", f)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("rollguard check config refuses the rendered configuration: %v\n%s\n%s", err, out.String(), b)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if rollguardBin != "" {
		os.RemoveAll(filepath.Dir(rollguardBin))
	}
	os.Exit(code)
}

func only[T any](t *testing.T, xs []T) T {
	t.Helper()
	if len(xs) != 1 {
		t.Fatalf("%d objects, want 1", len(xs))
	}
	return xs[0]
}

func mapValues[T any](m map[string]T) []T {
	var out []T
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func container(t *testing.T, pod *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Containers {
		if pod.Containers[i].Name == name {
			return &pod.Containers[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func mountFor(c *corev1.Container, dir string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == dir {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func volume(pod *corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func argValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func labelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
