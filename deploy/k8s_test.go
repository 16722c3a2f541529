package deploy

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// overlays are the per-IDC examples under k8s/overlays.
var overlays = []string{"idc-a", "idc-b"}

// k8sObject is the part of a rendered manifest the checks read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		// Service
		Type     string        `yaml:"type"`
		Selector yaml.Node     `yaml:"selector"`
		Ports    []servicePort `yaml:"ports"`
		// Deployment, StatefulSet
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type servicePort struct {
	Port       int       `yaml:"port"`
	TargetPort yaml.Node `yaml:"targetPort"`
}

type podSpec struct {
	TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
	Affinity                      struct {
		PodAntiAffinity map[string][]struct {
			TopologyKey     string `yaml:"topologyKey"`
			PodAffinityTerm struct {
				TopologyKey string `yaml:"topologyKey"`
			} `yaml:"podAffinityTerm"`
		} `yaml:"podAntiAffinity"`
	} `yaml:"affinity"`
	Containers []container `yaml:"containers"`
}

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		HostPort      int    `yaml:"hostPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef *struct {
				Name string `yaml:"name"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
}

type probe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"`
	} `yaml:"httpGet"`
	TCPSocket *struct {
		Port yaml.Node `yaml:"port"`
	} `yaml:"tcpSocket"`
}

// render runs `kubectl kustomize` on an overlay.
func render(t *testing.T, overlay string) []k8sObject {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatal("kubectl is not installed; it renders the overlays offline (`kubectl kustomize DIR`)")
	}
	cmd := exec.Command("kubectl", "kustomize", filepath.Join(repoRoot(), "deploy", "k8s", "overlays", overlay))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", overlay, err, stderr.String())
	}
	var objs []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: parse rendered YAML: %v", overlay, err)
		}
		objs = append(objs, o)
	}
	return objs
}

// fieldValues stand in for what the downward API gives a pod.
var fieldValues = map[string]string{
	"status.podIP":  "10.1.2.3",
	"status.hostIP": "10.9.8.7",
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand resolves $(VAR) the way kubelet does in args and env values; an
// unknown variable is an error (kubelet would leave it verbatim).
func expand(t *testing.T, s string, env map[string]string) string {
	t.Helper()
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := varRef.FindStringSubmatch(m)[1]
		v, ok := env[name]
		if !ok {
			t.Errorf("%q refers to $(%s), which the container does not define", s, name)
		}
		return v
	})
}

// portOf resolves a probe or Service port (a number or a port name).
func portOf(t *testing.T, n yaml.Node, c container) int {
	t.Helper()
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort
		}
	}
	t.Errorf("port %q: no such container port", n.Value)
	return -1
}

func TestK8sOverlaysMatchCode(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) { checkOverlay(t, render(t, overlay)) })
	}
}

func checkOverlay(t *testing.T, objs []k8sObject) {
	configMaps := map[string]map[string]string{}
	var pdbs, lbs []k8sObject
	for _, o := range objs {
		switch o.Kind {
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o.Data
		case "PodDisruptionBudget":
			pdbs = append(pdbs, o)
		case "Service":
			if o.Spec.Type == "LoadBalancer" {
				lbs = append(lbs, o)
			}
		}
	}
	used := map[string]bool{}
	for _, o := range objs {
		if o.Kind != "Deployment" && o.Kind != "StatefulSet" {
			continue
		}
		pod := o.Spec.Template
		for _, c := range pod.Spec.Containers {
			name := o.Kind + "/" + o.Metadata.Name
			t.Run(name, func(t *testing.T) {
				inv, listen := checkContainer(t, c, configMaps, podName(o))
				bin := inv.bin
				used[bin] = true
				admin := port(t, listen["admin"])
				if a := pod.Metadata.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" || a["prometheus.io/port"] != strconv.Itoa(admin) {
					t.Errorf("prometheus annotations %v: want scrape true, path /metrics, port %d (-admin)", a, admin)
				}
				if !slices.ContainsFunc(pdbs, func(p k8sObject) bool { return selects(p.Spec.Selector, pod.Metadata.Labels) }) {
					t.Errorf("no PodDisruptionBudget selects %v", pod.Metadata.Labels)
				}
				if bin == "room" {
					checkRoom(t, o, c, inv, listen, lbs)
				}
			})
		}
	}
	for _, s := range services {
		if !used[s] {
			t.Errorf("no workload runs %s", s)
		}
	}
}

// podName is the name of a pod of workload o, for fieldRef metadata.name.
func podName(o k8sObject) string {
	if o.Kind == "StatefulSet" {
		return o.Metadata.Name + "-0"
	}
	return o.Metadata.Name + "-5d8f7c9b4-x2x7q"
}

// checkContainer checks flags, environment, ports and probes of one
// container and returns its program and listen addresses.
func checkContainer(t *testing.T, c container, configMaps map[string]map[string]string, podName string) (invocation, map[string]string) {
	t.Helper()
	env := map[string]string{}
	var named []string // PUSHGW_* set on the container
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		data, ok := configMaps[ef.ConfigMapRef.Name]
		if !ok {
			t.Errorf("envFrom: no ConfigMap %s", ef.ConfigMapRef.Name)
		}
		for k, v := range data {
			env[k] = v
			named = append(named, k)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(t, e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			v, ok := fieldValues[e.ValueFrom.FieldRef.FieldPath]
			if e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
				v, ok = podName, true
			}
			if !ok {
				t.Errorf("env %s: fieldRef %s not understood by this test", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		default:
			env[e.Name] = "from-a-secret"
		}
		named = append(named, e.Name)
	}
	argv := append(append([]string{}, c.Command...), c.Args...)
	for i, a := range argv {
		argv[i] = expand(t, a, env)
	}
	inv := parseArgs(t, argv)
	u := helpOf(t, inv.bin)
	listen := map[string]string{}
	for _, fl := range listenFlags {
		if v, ok := inv.flags[fl]; ok {
			listen[fl] = v
		}
	}
	for _, k := range named {
		if !strings.HasPrefix(k, "PUSHGW_") {
			continue
		}
		if !u.envs[k] {
			t.Errorf("environment %s: %s does not read it (see `%s -h`)", k, inv.bin, inv.bin)
		}
		if fl, ok := listenEnv[k]; ok {
			if _, set := listen[fl]; !set {
				listen[fl] = env[k]
			}
		}
	}
	// Kubelet probes and Prometheus reach the pod IP, and peers dial the
	// published gRPC address: neither may be loopback (nor 0.0.0.0 for gRPC).
	for fl, addr := range listen {
		host := addr[:strings.LastIndexByte(addr, ':')]
		if host == "127.0.0.1" || host == "localhost" {
			t.Errorf("-%s %s: loopback is unreachable from outside the pod", fl, addr)
		}
		if fl == "grpc" && (host == "0.0.0.0" || host == "") {
			t.Errorf("-grpc %s is published in etcd; listen on the pod IP", addr)
		}
	}
	if _, ok := listen["admin"]; !ok {
		t.Fatalf("%s: no -admin: its default is loopback, which probes cannot reach", inv.bin)
	}
	// Declared container ports are the ports the program listens on, and
	// every client-facing or admin listener is declared.
	ports := map[int]bool{}
	for _, p := range c.Ports {
		ports[p.ContainerPort] = true
		if !slices.ContainsFunc(mapValues(listen), func(a string) bool { return port(t, a) == p.ContainerPort }) {
			t.Errorf("containerPort %d (%s): %s does not listen there (%v)", p.ContainerPort, p.Name, inv.bin, listen)
		}
	}
	for fl, addr := range listen {
		if !ports[port(t, addr)] {
			t.Errorf("-%s %s: port not declared in ports", fl, addr)
		}
	}
	admin := port(t, listen["admin"])
	for what, p := range map[string]*probe{"readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want httpGet /healthz on the admin port", what)
			continue
		}
		if p.HTTPGet.Path != "/healthz" || portOf(t, p.HTTPGet.Port, c) != admin {
			t.Errorf("%s: GET %s on port %s, want /healthz on %d (-admin)", what, p.HTTPGet.Path, p.HTTPGet.Port.Value, admin)
		}
	}
	switch lp := c.LivenessProbe; {
	case lp == nil:
		t.Error("no livenessProbe")
	case lp.TCPSocket != nil:
		if portOf(t, lp.TCPSocket.Port, c) != admin {
			t.Errorf("livenessProbe: tcpSocket port %s, want %d (-admin)", lp.TCPSocket.Port.Value, admin)
		}
	case lp.HTTPGet != nil:
		if portOf(t, lp.HTTPGet.Port, c) != admin {
			t.Errorf("livenessProbe: port %s, want %d (-admin)", lp.HTTPGet.Port.Value, admin)
		}
	}
	return inv, listen
}

// checkRoom checks what a connection-heavy pod needs: clients can reach
// the advertised address, a drain on the way out, spread over nodes.
func checkRoom(t *testing.T, o k8sObject, c container, inv invocation, listen map[string]string, lbs []k8sObject) {
	t.Helper()
	tcp := port(t, listen["tcp"])
	adv := inv.flags["advertise-tcp"]
	if adv == "" {
		t.Fatal("room: no -advertise-tcp; the -tcp address is the pod's, which clients cannot reach")
	}
	var hostPort int
	for _, p := range c.Ports {
		if p.ContainerPort == tcp {
			hostPort = p.HostPort
		}
	}
	switch {
	case hostPort != 0:
		if port(t, adv) != hostPort || !strings.HasPrefix(adv, fieldValues["status.hostIP"]+":") {
			t.Errorf("room on hostPort %d must advertise $(HOST_IP):%d, got %s", hostPort, hostPort, adv)
		}
	default:
		// A LoadBalancer per room: one Service selecting each replica's pod.
		replicas := 1
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
		for i := range replicas {
			pod := o.Metadata.Name + "-" + strconv.Itoa(i)
			ok := slices.ContainsFunc(lbs, func(s k8sObject) bool {
				return selects(s.Spec.Selector, map[string]string{"statefulset.kubernetes.io/pod-name": pod, "app.kubernetes.io/name": "room"}) &&
					slices.ContainsFunc(s.Spec.Ports, func(p servicePort) bool {
						return portOf(t, p.TargetPort, c) == tcp && p.Port == port(t, adv)
					})
			})
			if !ok {
				t.Errorf("room without hostPort: no LoadBalancer Service for pod %s forwarding port %d to %d", pod, port(t, adv), tcp)
			}
		}
	}
	ps := c.Lifecycle.PreStop
	if ps == nil || ps.Exec == nil || !strings.Contains(strings.Join(ps.Exec.Command, " "), "kill -TERM 1") {
		t.Error("room: preStop must start the drain (SIGTERM to the room, PID 1) and wait for it")
	}
	if g := o.Spec.Template.Spec.TerminationGracePeriodSeconds; g < 15 {
		t.Errorf("room: terminationGracePeriodSeconds %d is shorter than a drain (~10 s) plus margin", g)
	}
	aa := o.Spec.Template.Spec.Affinity.PodAntiAffinity
	if terms := aa["requiredDuringSchedulingIgnoredDuringExecution"]; len(terms) == 0 || terms[0].TopologyKey != "kubernetes.io/hostname" {
		t.Error("room: want required pod anti-affinity on kubernetes.io/hostname (one room per node)")
	}
}

// selects reports whether a selector (a Service's map, or a PDB's
// matchLabels) matches labels.
func selects(sel yaml.Node, labels map[string]string) bool {
	var m map[string]any
	if err := sel.Decode(&m); err != nil || len(m) == 0 {
		return false
	}
	if ml, ok := m["matchLabels"].(map[string]any); ok {
		m = ml
	}
	for k, v := range m {
		if s, _ := v.(string); labels[k] != s {
			return false
		}
	}
	return true
}
