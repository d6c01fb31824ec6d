{{/* Chart name, truncated to a DNS label. */}}
{{- define "hotline-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, suffixed with the chart name unless it already contains it. */}}
{{- define "hotline-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's pods (never change them on upgrade). */}}
{{- define "hotline-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hotline-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "hotline-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hotline-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: hotline-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hotline-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hotline-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hotline-operator.leaseName" -}}
{{- default (include "hotline-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "hotline-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Namespaces watched in namespaced scope, as a list. */}}
{{- define "hotline-operator.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- toYaml .Values.watch.namespaces }}
{{- else }}
{{- toYaml (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* Values the schema cannot check. */}}
{{- define "hotline-operator.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if and (gt (int .Values.replicaCount) 1) (not $le.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: replicas without a leader would all write" }}
{{- end }}
{{- if $le.enabled }}
{{- if not (lt (int $le.renewDeadline) (int $le.leaseDuration)) }}
{{- fail "leaderElection.renewDeadline must be shorter than leaderElection.leaseDuration" }}
{{- end }}
{{- if not (lt (int $le.retryPeriod) (int $le.renewDeadline)) }}
{{- fail "leaderElection.retryPeriod must be shorter than leaderElection.renewDeadline" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.watch.scope "cluster") .Values.watch.namespaces }}
{{- fail "watch.namespaces is only used with watch.scope=namespaced" }}
{{- end }}
{{- end }}

{{/*
The operator's permissions on the watched namespaces: the same rules in the
cluster-wide ClusterRole and in the per-namespace Roles. Exact resources and
verbs, no wildcard.
*/}}
{{- define "hotline-operator.operatorRules" -}}
# Hotlines and CrisisPlans: read and watch; the spec is the platform team's.
- apiGroups: ["crisis.hotline.dev"]
  resources: ["hotlines", "crisisplans"]
  verbs: ["get", "list", "watch"]
# Status: server-side apply under the field manager hotline-operator.
- apiGroups: ["crisis.hotline.dev"]
  resources: ["hotlines/status", "crisisplans/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion on the Hotline's children.
- apiGroups: ["crisis.hotline.dev"]
  resources: ["hotlines/finalizers"]
  verbs: ["update"]
# Managed components: server-side applied Deployments.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Referenced StatefulSets: watched for readiness, scaled through /scale.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "patch", "update"]
# Component Services and the <hotline>-announcement ConfigMap.
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- range .Values.scaleTargets }}
# workloadRef kind from values: read the object, scale it through /scale.
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ range $i, $r := .resources }}{{ if $i }}, {{ end }}{{ $r | quote }}{{ end }}]
  verbs: ["get"]
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ range $i, $r := .resources }}{{ if $i }}, {{ end }}{{ printf "%s/scale" $r | quote }}{{ end }}]
  verbs: ["get", "patch", "update"]
{{- end }}
{{- end }}

{{/* Start-up check: the two CRDs are installed and Established. */}}
{{- define "hotline-operator.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["hotlines.crisis.hotline.dev", "crisisplans.crisis.hotline.dev"]
  verbs: ["get"]
{{- end }}
