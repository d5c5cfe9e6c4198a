// Command check validates Sluice's Kubernetes manifests without a cluster.
//
// Usage:
//
//	go run . FILE.yaml...
//
// Each file is split into documents on "---" lines. Every non-empty document
// is decoded strictly (sigs.k8s.io/yaml UnmarshalStrict) into the Kubernetes
// API type its apiVersion and kind name, from k8s.io/api: an unknown or
// duplicate field, or a value of the wrong type, is an error. Only the kinds
// Sluice's manifests use are accepted. Then the references that a strict
// decode cannot see are checked:
//
//   - probes and Services name ports that the container declares;
//   - every volumeMount names a volume or a volumeClaimTemplate;
//   - ConfigMap and Secret volumes name objects of the same file;
//   - a workload's selector matches its pod template's labels;
//   - Service and PodDisruptionBudget selectors match a workload's pods;
//   - a StatefulSet's serviceName names a Service of the same file;
//   - every ConfigMap holds the key "sluice.toml".
//
// It prints "ok: FILE (N objects)" per valid file and exits 1 after listing
// every problem, each as "FILE: document I (Kind/name): problem".
package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The Sluice configuration a ConfigMap must hold.
const configKey = "sluice.toml"

// doc is one decoded document of a file.
type doc struct {
	index int    // 1-based position in the file
	kind  string // kind as written
	name  string // metadata.name
	obj   any    // pointer to the typed object
}

func (d doc) String() string { return fmt.Sprintf("document %d (%s/%s)", d.index, d.kind, d.name) }

// workload is the part of a StatefulSet or Deployment the checks look at.
type workload struct {
	doc
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim // StatefulSet volumeClaimTemplates
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: check FILE.yaml...")
		os.Exit(2)
	}
	failed := false
	for _, file := range os.Args[1:] {
		n, problems := checkFile(file)
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "%s: %s\n", file, p)
		}
		if len(problems) > 0 {
			failed = true
			continue
		}
		fmt.Printf("ok: %s (%d objects)\n", file, n)
	}
	if failed {
		os.Exit(1)
	}
}

// checkFile decodes and checks one file; it returns the number of objects
// and every problem found.
func checkFile(file string) (int, []string) {
	text, err := os.ReadFile(file)
	if err != nil {
		return 0, []string{err.Error()}
	}
	var docs []doc
	var problems []string
	for i, src := range splitDocuments(string(text)) {
		d, err := decode(i+1, src)
		if err != nil {
			problems = append(problems, err.Error())
		} else if d != nil {
			docs = append(docs, *d)
		}
	}
	if len(problems) > 0 {
		return len(docs), problems // references among half-decoded objects mislead
	}
	if len(docs) == 0 {
		return 0, []string{"no objects"}
	}
	return len(docs), checkReferences(docs)
}

// splitDocuments splits a multi-document YAML text on "---" lines. Each
// document keeps the lines before it as empty lines, so that the line
// numbers in decoding errors are the file's.
func splitDocuments(text string) []string {
	var docs []string
	var cur strings.Builder
	for i, line := range strings.SplitAfter(text, "\n") {
		if strings.TrimRight(line, " \t\r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			cur.WriteString(strings.Repeat("\n", i+1))
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

// decode decodes document index strictly into the API type its apiVersion
// and kind name; nil for a document without content (only comments).
func decode(index int, src string) (*doc, error) {
	var content any
	if err := yaml.Unmarshal([]byte(src), &content); err != nil {
		return nil, fmt.Errorf("document %d: %v", index, err)
	}
	if content == nil {
		return nil, nil
	}
	var meta struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal([]byte(src), &meta); err != nil {
		return nil, fmt.Errorf("document %d: not an object with apiVersion, kind and metadata: %v", index, err)
	}
	d := &doc{index: index, kind: meta.Kind, name: meta.Metadata.Name}
	switch meta.APIVersion + " " + meta.Kind {
	case "v1 ConfigMap":
		d.obj = &corev1.ConfigMap{}
	case "v1 Secret":
		d.obj = &corev1.Secret{}
	case "v1 Service":
		d.obj = &corev1.Service{}
	case "apps/v1 StatefulSet":
		d.obj = &appsv1.StatefulSet{}
	case "apps/v1 Deployment":
		d.obj = &appsv1.Deployment{}
	case "policy/v1 PodDisruptionBudget":
		d.obj = &policyv1.PodDisruptionBudget{}
	default:
		return nil, fmt.Errorf("%s: unsupported apiVersion %q kind %q", d, meta.APIVersion, meta.Kind)
	}
	if err := yaml.UnmarshalStrict([]byte(src), d.obj); err != nil {
		return nil, fmt.Errorf("%s: %s", d, explain(err, src))
	}
	if d.name == "" {
		return nil, fmt.Errorf("%s: no metadata.name", d)
	}
	return d, nil
}

var unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)

// explain rewords a decoding error: without the library's wrapping, and
// with the line of an unknown field, which the error itself lacks.
func explain(err error, src string) string {
	msg := err.Error()
	for _, wrap := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, wrap)
	}
	msg = strings.ReplaceAll(msg, "\n ", "")
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		var at []int // lines with that key; only one is unambiguous
		for i, line := range strings.Split(src, "\n") {
			key := strings.TrimLeft(strings.TrimSpace(line), "- ")
			if strings.HasPrefix(key, m[1]+":") {
				at = append(at, i+1)
			}
		}
		if len(at) == 1 {
			return fmt.Sprintf("line %d: %s", at[0], msg)
		}
	}
	return msg
}

// checkReferences checks what strict decoding cannot: references inside
// and between the objects of one file.
func checkReferences(docs []doc) []string {
	var problems []string
	report := func(d doc, format string, args ...any) {
		problems = append(problems, d.String()+": "+fmt.Sprintf(format, args...))
	}
	has := map[string]bool{} // "Kind/name" of every object
	var workloads []workload
	for _, d := range docs {
		has[d.kind+"/"+d.name] = true
		switch o := d.obj.(type) {
		case *appsv1.StatefulSet:
			workloads = append(workloads, workload{d, o.Spec.Selector, o.Spec.Template, o.Spec.VolumeClaimTemplates})
		case *appsv1.Deployment:
			workloads = append(workloads, workload{d, o.Spec.Selector, o.Spec.Template, nil})
		}
	}

	for _, w := range workloads {
		if !selects(w.selector, w.pod.Labels) {
			report(w.doc, "spec.selector does not match the pod template's labels %v", w.pod.Labels)
		}
		if s, ok := w.obj.(*appsv1.StatefulSet); ok && !has["Service/"+s.Spec.ServiceName] {
			report(w.doc, "serviceName %q names no Service of this file", s.Spec.ServiceName)
		}
		volumes := map[string]bool{}
		for _, v := range w.pod.Spec.Volumes {
			volumes[v.Name] = true
			if v.ConfigMap != nil && !has["ConfigMap/"+v.ConfigMap.Name] {
				report(w.doc, "volume %q: ConfigMap %q is not in this file", v.Name, v.ConfigMap.Name)
			}
			if v.Secret != nil && !has["Secret/"+v.Secret.SecretName] {
				report(w.doc, "volume %q: Secret %q is not in this file", v.Name, v.Secret.SecretName)
			}
		}
		for _, c := range w.claims {
			volumes[c.Name] = true
		}
		for _, c := range allContainers(w.pod.Spec) {
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					report(w.doc, "container %q mounts %q, which is neither a volume nor a volumeClaimTemplate", c.Name, m.Name)
				}
			}
			probes := []struct {
				what string
				p    *corev1.Probe
			}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}, {"startupProbe", c.StartupProbe}}
			for _, probe := range probes {
				what, p := probe.what, probe.p
				if p == nil {
					continue
				}
				if p.HTTPGet != nil && !declaresPort(c, p.HTTPGet.Port) {
					report(w.doc, "container %q: %s.httpGet.port %q is not a port name the container declares", c.Name, what, p.HTTPGet.Port.StrVal)
				}
				if p.TCPSocket != nil && !declaresPort(c, p.TCPSocket.Port) {
					report(w.doc, "container %q: %s.tcpSocket.port %q is not a port name the container declares", c.Name, what, p.TCPSocket.Port.StrVal)
				}
			}
		}
	}

	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.ConfigMap:
			if _, ok := o.Data[configKey]; !ok {
				report(d, "no data key %q", configKey)
			}
		case *corev1.Service:
			pods := selected(workloads, &metav1.LabelSelector{MatchLabels: o.Spec.Selector})
			if len(pods) == 0 {
				report(d, "selector %v matches the pods of no StatefulSet or Deployment of this file", o.Spec.Selector)
			}
			for _, p := range o.Spec.Ports {
				for _, w := range pods {
					if !podDeclaresPort(w.pod.Spec, p.TargetPort) {
						report(d, "port %q: targetPort %q is not a port name of %s's containers", p.Name, p.TargetPort.StrVal, w.name)
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			if len(selected(workloads, o.Spec.Selector)) == 0 {
				report(d, "selector matches the pods of no StatefulSet or Deployment of this file")
			}
		}
	}
	return problems
}

// selects reports whether selector matches a pod with labels podLabels; an
// empty or invalid selector matches nothing.
func selects(selector *metav1.LabelSelector, podLabels map[string]string) bool {
	if selector == nil || (len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0) {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(selector)
	return err == nil && s.Matches(labels.Set(podLabels))
}

// selected returns the workloads whose pods selector matches.
func selected(workloads []workload, selector *metav1.LabelSelector) []workload {
	var out []workload
	for _, w := range workloads {
		if selects(selector, w.pod.Labels) {
			out = append(out, w)
		}
	}
	return out
}

func allContainers(spec corev1.PodSpec) []corev1.Container {
	return append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
}

// declaresPort reports whether port, if a name, is one of c's port names; a
// port number need not be declared.
func declaresPort(c corev1.Container, port intstr.IntOrString) bool {
	if port.Type == intstr.Int {
		return true
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return true
		}
	}
	return false
}

// podDeclaresPort is declaresPort for any container of a pod.
func podDeclaresPort(spec corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		if declaresPort(c, port) {
			return true
		}
	}
	return false
}
