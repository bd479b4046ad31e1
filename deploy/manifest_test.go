package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

// Kustomizations that are deployed as they are.
const (
	baseDir       = "base"
	privilegedDir = "overlays/privileged"
	exporterDir   = "examples/statsd-exporter"
)

// objectTypes maps apiVersion/kind to the Kubernetes API type a manifest
// must decode into. A manifest of any other kind fails the test: add its
// type here when you add one.
var objectTypes = map[string]func() any{
	"v1/Namespace":       func() any { return new(corev1.Namespace) },
	"v1/ServiceAccount":  func() any { return new(corev1.ServiceAccount) },
	"apps/v1/DaemonSet":  func() any { return new(appsv1.DaemonSet) },
	"v1/ConfigMap":       func() any { return new(corev1.ConfigMap) },
	"apps/v1/Deployment": func() any { return new(appsv1.Deployment) },
}

// jsonPatch is one operation of a kustomize JSON 6902 patch of a
// container's security context, the only kind this directory holds.
type jsonPatch struct {
	Op    string                  `json:"op"`
	Path  string                  `json:"path"`
	Value *corev1.SecurityContext `json:"value"`
}

// decodeStrict decodes one YAML document into the API type its apiVersion
// and kind name. Unknown and duplicate fields are errors.
func decodeStrict(doc []byte) (any, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	newObj, ok := objectTypes[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("no API type for apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := unmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// unmarshalStrict decodes YAML into v as the API server decodes JSON:
// field names match case-sensitively, and unknown or duplicate fields are
// errors.
func unmarshalStrict(doc []byte, v any) error {
	j, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// documents splits a YAML stream into its non-empty documents.
func documents(stream []byte) ([][]byte, error) {
	r := yaml.NewYAMLReader(bufioReader(stream))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// decodeFile decodes every document of a file under deploy/ strictly:
// kustomizations into kustomize's type, patches into a list of operations
// on a security context, everything else into Kubernetes API types.
func decodeFile(path string) ([]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if filepath.Base(path) == "kustomization.yaml" {
		var k kusttypes.Kustomization
		if err := unmarshalStrict(b, &k); err != nil {
			return nil, err
		}
		return []any{&k}, nil
	}
	if bytes.HasPrefix(bytes.TrimSpace(stripComments(b)), []byte("- op:")) {
		var p []jsonPatch
		if err := unmarshalStrict(b, &p); err != nil {
			return nil, err
		}
		return []any{p}, nil
	}
	docs, err := documents(b)
	if err != nil {
		return nil, err
	}
	var objs []any
	for _, d := range docs {
		obj, err := decodeStrict(d)
		if err != nil {
			return nil, err
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// TestManifestsDecodeStrictly decodes every YAML file under deploy/ into
// the real API types, failing on unknown fields.
func TestManifestsDecodeStrictly(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return err
		}
		n++
		objs, err := decodeFile(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
		} else if len(objs) == 0 {
			t.Errorf("%s: no documents", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Errorf("decoded %d YAML files, want at least the base's four and the overlay's two", n)
	}
}

// TestStrictDecodingRejectsUnknownFields shows the decoder is strict: a
// misspelt field in the DaemonSet is an error, not silently dropped.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(baseDir, "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to string }{
		{"hostNetwork: true", "hostNetwrok: true"},
		{"readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"},
		{"      hostNetwork: true", "      hostNetwork: true\n      hostNetwork: true"},
	} {
		bad := strings.Replace(string(b), tc.from, tc.to, 1)
		if bad == string(b) {
			t.Fatalf("%q not in daemonset.yaml", tc.from)
		}
		if _, err := decodeStrict([]byte(bad)); err == nil {
			t.Errorf("%q decoded without error", tc.to)
		}
	}
}

// render runs kustomize on dir, as kubectl apply -k would, and decodes
// its output strictly.
func render(t *testing.T, dir string) []any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := documents(out)
	if err != nil {
		t.Fatal(err)
	}
	var objs []any
	for _, d := range docs {
		obj, err := decodeStrict(d)
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

// daemonSet returns the one DaemonSet among objs.
func daemonSet(t *testing.T, objs []any) *appsv1.DaemonSet {
	t.Helper()
	var found []*appsv1.DaemonSet
	for _, o := range objs {
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			found = append(found, ds)
		}
	}
	if len(found) != 1 || len(found[0].Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one DaemonSet with one container, got %d DaemonSets", len(found))
	}
	return found[0]
}

// TestKustomizationsRender builds the base and every overlay: each yields
// the namespace, the service account and the DaemonSet, all in the
// bpfstatd namespace.
func TestKustomizationsRender(t *testing.T) {
	for _, dir := range []string{baseDir, privilegedDir, exporterDir} {
		kinds := map[string]bool{}
		for _, o := range render(t, dir) {
			kinds[reflect.TypeOf(o).Elem().Name()] = true
			switch o := o.(type) {
			case *appsv1.DaemonSet:
				if o.Namespace != "bpfstatd" {
					t.Errorf("%s: DaemonSet in namespace %q", dir, o.Namespace)
				}
				for _, c := range o.Spec.Template.Spec.Containers {
					checkEnvReferences(t, dir, c)
				}
			case *corev1.ServiceAccount:
				if o.Namespace != "bpfstatd" {
					t.Errorf("%s: ServiceAccount in namespace %q", dir, o.Namespace)
				}
			}
		}
		for _, k := range []string{"Namespace", "ServiceAccount", "DaemonSet"} {
			if !kinds[k] {
				t.Errorf("%s renders no %s", dir, k)
			}
		}
	}
}

// TestDaemonSetLeastPrivilege checks the default DaemonSet against the
// issue's list: not privileged, every capability dropped but those added,
// read-only root, host network, host paths only where needed, the
// downward API, probes through --health, every node, node-critical,
// requests and limits.
func TestDaemonSetLeastPrivilege(t *testing.T) {
	ds := daemonSet(t, render(t, baseDir))
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no security context")
	}
	check := func(ok bool, format string, args ...any) {
		t.Helper()
		if !ok {
			t.Errorf(format, args...)
		}
	}
	check(sc.Privileged != nil && !*sc.Privileged, "privileged must be false")
	check(sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation must be false")
	check(sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem must be true")
	check(sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}), "capabilities must drop ALL, got %v", sc.Capabilities)
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			check(slices.Contains(allowedCaps, string(c)), "capability %s is outside the set the daemon may need %v: measure it (TestPodCapabilities) and add it to allowedCaps", c, allowedCaps)
		}
		check(len(sc.Capabilities.Add) > 0, "no capability added")
	}
	check(sc.SeccompProfile != nil, "seccomp profile must be explicit: RuntimeDefault refuses bpf(2) without CAP_SYS_ADMIN")
	check(pod.HostNetwork, "hostNetwork must be true (TCX attaches to the node's links)")
	check(!pod.HostPID && !pod.HostIPC, "no host PID or IPC namespace")
	check(pod.DNSPolicy == corev1.DNSClusterFirstWithHostNet, "dnsPolicy %q with host network", pod.DNSPolicy)
	check(pod.PriorityClassName == "system-node-critical", "priorityClassName %q", pod.PriorityClassName)
	check(pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken, "the daemon needs no API token")
	check(slices.ContainsFunc(pod.Tolerations, func(t corev1.Toleration) bool {
		return t.Operator == corev1.TolerationOpExists && t.Key == "" && t.Effect == ""
	}), "no toleration of every taint: %v", pod.Tolerations)

	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			check(slices.Contains(allowedHostPaths, v.HostPath.Path), "host path %s is not one the daemon may need %v", v.HostPath.Path, allowedHostPaths)
		}
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	fieldRef := func(name string) string {
		if e, ok := env[name]; ok && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
		return ""
	}
	check(fieldRef("NODE_NAME") == "spec.nodeName", "NODE_NAME must come from spec.nodeName")
	check(fieldRef("HOST_IP") == "status.hostIP", "HOST_IP must come from status.hostIP")
	check(env["BPFSTATD_OUTPUT"].Value == "udp://$(HOST_IP):$(STATSD_PORT)", "BPFSTATD_OUTPUT %q must ship to the node's IP", env["BPFSTATD_OUTPUT"].Value)
	check(strings.Contains(env["BPFSTATD_TAG"].Value, "$(NODE_NAME)"), "BPFSTATD_TAG %q must name the node", env["BPFSTATD_TAG"].Value)
	sock := env["BPFSTATD_ADMIN_SOCKET"].Value
	check(slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == filepath.Dir(sock) && !m.ReadOnly }),
		"the admin socket's directory %q must be a writable volume", filepath.Dir(sock))

	health := []string{"bpfstatd", "--health"}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		check(p != nil && p.Exec != nil && slices.Equal(p.Exec.Command, health), "%s probe must exec %v", name, health)
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		check(hasReq && hasLim, "%s needs a request and a limit", r)
		check(req.Cmp(lim) <= 0, "%s request %s above its limit %s", r, req.String(), lim.String())
	}
	// The request must cover the measured peak (deploy/README.md).
	measured := resource.MustParse("13Mi")
	check(c.Resources.Requests.Memory().Cmp(measured) >= 0, "memory request below the measured peak RSS %s", measured.String())
	check(c.Image == "ghcr.io/bpfstatd/bpfstatd:latest", "image %q: the kustomization's images entry did not apply", c.Image)
}

// Capabilities and host paths the daemon may come to need as collectors
// land; the DaemonSet adds only those TestPodCapabilities proves it needs.
var (
	allowedCaps      = []string{"BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE"}
	allowedHostPaths = []string{"/sys/fs/bpf", "/sys/kernel/tracing", "/sys/kernel/debug", "/run/bpfstatd"}
)

// TestExporterExample changes the receiver's port, and nothing else.
func TestExporterExample(t *testing.T) {
	base := daemonSet(t, render(t, baseDir))
	ex := daemonSet(t, render(t, exporterDir))
	env := ex.Spec.Template.Spec.Containers[0].Env
	i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "STATSD_PORT" })
	if i < 0 || env[i].Value != "9125" {
		t.Fatalf("example's env: %+v", env)
	}
	env[i].Value = "8125"
	byName := func(a, b corev1.EnvVar) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(env, byName)
	slices.SortFunc(base.Spec.Template.Spec.Containers[0].Env, byName)
	if !reflect.DeepEqual(base, ex) {
		t.Error("the statsd_exporter example changes more than STATSD_PORT")
	}
}

// checkEnvReferences fails t unless every $(VAR) in the container's env
// values, command and args names a variable defined above it: Kubernetes
// leaves any other reference as it is, and the daemon would be handed
// "udp://$(HOST_IP):8125".
func checkEnvReferences(t *testing.T, dir string, c corev1.Container) {
	t.Helper()
	defined := map[string]bool{}
	check := func(what, s string) {
		for _, m := range varRef.FindAllStringSubmatch(s, -1) {
			if m[1] != "" && !defined[m[1]] {
				t.Errorf("%s: %s refers to $(%s), which is not defined above it", dir, what, m[1])
			}
		}
	}
	for _, e := range c.Env {
		check("env "+e.Name, e.Value)
		defined[e.Name] = true
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		check("argument "+a, a)
	}
}

// TestPrivilegedOverlay changes the container's security context and
// nothing else, into one Kubernetes accepts: privileged, so escalation
// allowed.
func TestPrivilegedOverlay(t *testing.T) {
	base := daemonSet(t, render(t, baseDir))
	priv := daemonSet(t, render(t, privilegedDir))
	sc := priv.Spec.Template.Spec.Containers[0].SecurityContext
	if sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Fatalf("privileged overlay: security context %+v is not privileged", sc)
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		t.Error("privileged with allowPrivilegeEscalation false: the API server rejects it")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("privileged overlay: root file system no longer read-only")
	}
	base.Spec.Template.Spec.Containers[0].SecurityContext = nil
	priv.Spec.Template.Spec.Containers[0].SecurityContext = nil
	if !reflect.DeepEqual(base, priv) {
		a, _ := sigsyaml.Marshal(base)
		b, _ := sigsyaml.Marshal(priv)
		t.Errorf("privileged overlay changes more than the security context:\nbase:\n%s\nprivileged:\n%s", a, b)
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
