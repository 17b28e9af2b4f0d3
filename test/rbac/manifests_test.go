package rbac

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, u := range objs {
		out = append(out, u.GetKind()+" "+u.GetName())
	}
	return out
}

func deployment(name string) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: systemNamespace, Name: name}, d)).To(Succeed())
	return d
}

func envVar(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

var _ = Describe("The kustomize builds", Ordered, func() {
	var defaults, verifier []*unstructured.Unstructured

	BeforeAll(func() {
		defaults = decodeManifests(kustomize("config/default"))
		verifier = decodeManifests(kustomize("config/verifier"))
	})

	It("of config/default and config/verifier apply server-side to the real API server", func() {
		Expect(kinds(defaults)).To(ContainElements(
			"Namespace keysmith-system", "CustomResourceDefinition apikeys.keysmith.dev",
			"ServiceAccount keysmith-manager", "ClusterRole keysmith-manager", "ClusterRole keysmith-metrics-auth",
			"ClusterRoleBinding keysmith-metrics-auth", "ClusterRole keysmith-metrics-reader", "ClusterRole keysmith-verifier",
			"Deployment keysmith-manager", "Service keysmith-metrics", "PodDisruptionBudget keysmith-manager"))
		Expect(kinds(verifier)).To(ContainElements(
			"ServiceAccount keysmith-verifier", "ClusterRoleBinding keysmith-verifier", "ClusterRoleBinding keysmith-verifier-metrics-auth",
			"ValidatingAdmissionPolicy keysmith-verifier-last-used-only", "ValidatingAdmissionPolicyBinding keysmith-verifier-last-used-only",
			"Deployment keysmith-verifier", "Service keysmith-verifier", "Service keysmith-verifier-metrics",
			"PodDisruptionBudget keysmith-verifier", "NetworkPolicy keysmith-verifier"))
		By("a server-side dry run first, then for real, as `kubectl apply --server-side -k` does")
		applyAll(defaults, client.DryRunAll)
		applyAll(verifier, client.DryRunAll)
		applyAll(defaults)
		applyAll(verifier)
	})

	It("run pods that Pod Security admits at the restricted level of keysmith-system", func() {
		for _, name := range []string{"keysmith-manager", "keysmith-verifier"} {
			d := deployment(name)
			pod := &corev1.Pod{}
			pod.Namespace, pod.GenerateName = systemNamespace, name+"-"
			pod.Labels, pod.Spec = d.Spec.Template.Labels, d.Spec.Template.Spec
			Expect(k8s.Create(context.Background(), pod, client.DryRunAll)).To(Succeed(), name)
		}
	})

	It("serve /metrics over HTTPS on 8443 and cap the Go heap at the memory limit", func() {
		for _, name := range []string{"keysmith-manager", "keysmith-verifier"} {
			c := deployment(name).Spec.Template.Spec.Containers[0]
			Expect(c.Args).To(ContainElement("--metrics-bind-address=:8443"), name)
			Expect(c.Args).NotTo(ContainElement(ContainSubstring("--metrics-secure")), name+": secure is the default")
			Expect(c.Ports).To(ContainElement(corev1.ContainerPort{Name: "metrics", ContainerPort: 8443, Protocol: corev1.ProtocolTCP}), name)
			gomemlimit := envVar(c, "GOMEMLIMIT")
			Expect(gomemlimit).NotTo(BeNil(), name)
			Expect(gomemlimit.ValueFrom.ResourceFieldRef.Resource).To(Equal("limits.memory"), name)
			Expect(c.Resources.Limits.Memory().IsZero()).To(BeFalse(), name+" has a memory limit")
		}
	})

	It("keep one manager and one verifier replica at most out during voluntary disruptions", func() {
		for _, name := range []string{"keysmith-manager", "keysmith-verifier"} {
			pdb := &policyv1.PodDisruptionBudget{}
			Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: systemNamespace, Name: name}, pdb)).To(Succeed())
			Expect(pdb.Spec.MaxUnavailable).To(Equal(ptr.To(intstr.FromInt32(1))))
			Expect(pdb.Spec.Selector.MatchLabels).To(Equal(deployment(name).Spec.Selector.MatchLabels), name)
		}
	})

	It("let only labelled namespaces reach the verifier, and the monitoring namespace its /metrics", func() {
		np := &networkingv1.NetworkPolicy{}
		Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: systemNamespace, Name: "keysmith-verifier"}, np)).To(Succeed())
		Expect(np.Spec.PodSelector.MatchLabels).To(Equal(deployment("keysmith-verifier").Spec.Selector.MatchLabels))
		Expect(np.Spec.PolicyTypes).To(Equal([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}))
		Expect(np.Spec.Ingress).To(HaveLen(2))
		ports := func(r networkingv1.NetworkPolicyIngressRule) []string {
			var out []string
			for _, p := range r.Ports {
				out = append(out, p.Port.String())
			}
			return out
		}
		Expect(np.Spec.Ingress[0].From).To(HaveLen(1))
		Expect(np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels).To(Equal(map[string]string{"keysmith.dev/verifier-client": "true"}))
		Expect(np.Spec.Ingress[0].From[0].PodSelector).To(BeNil())
		Expect(ports(np.Spec.Ingress[0])).To(ConsistOf("verify-http", "verify-grpc"))
		Expect(np.Spec.Ingress[1].From[0].NamespaceSelector.MatchLabels).To(Equal(map[string]string{"kubernetes.io/metadata.name": "monitoring"}))
		Expect(ports(np.Spec.Ingress[1])).To(ConsistOf("metrics"))
		// The named ports exist on the verifier's container.
		var named []string
		for _, p := range deployment("keysmith-verifier").Spec.Template.Spec.Containers[0].Ports {
			named = append(named, p.Name)
		}
		Expect(named).To(ContainElements("verify-http", "verify-grpc", "metrics"))
	})
})
