{{/* vim: set filetype=mustache: */}}

{{- define "spanscribe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or the release name alone when it already contains the chart name. */}}
{{- define "spanscribe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's resources: <fullname>-<component>, within the 63 character limit. */}}
{{- define "spanscribe.componentName" -}}
{{- $full := include "spanscribe.fullname" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-" -}}
{{- printf "%s-%s" $full .component -}}
{{- end -}}

{{- define "spanscribe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spanscribe.labels" -}}
helm.sh/chart: {{ include "spanscribe.chart" . }}
app.kubernetes.io/name: {{ include "spanscribe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spanscribe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "worker") */}}
{{- define "spanscribe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spanscribe.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spanscribe.componentLabels" -}}
{{ include "spanscribe.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spanscribe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spanscribe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference from (dict "image" .Values.image "ctx" $) */}}
{{- define "spanscribe.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "spanscribe.image" -}}
{{- include "spanscribe.imageRef" (dict "image" .Values.image "ctx" .) -}}
{{- end -}}

{{- define "spanscribe.edgeImage" -}}
{{- include "spanscribe.imageRef" (dict "image" .Values.edge.image "ctx" .) -}}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------------
     Cross-field checks that values.schema.json cannot express. Included by every template that
     depends on them, so `helm template` and `helm install` fail with the message.
     --------------------------------------------------------------------------------------------- */}}
{{- define "spanscribe.validate" -}}
{{- $v := .Values -}}
{{- $p := int $v.kafka.partitions -}}
{{- if $v.workers.enabled -}}
{{- if gt (int $v.workers.replicas) $p -}}
{{- fail (printf "workers.replicas (%d) must not exceed kafka.partitions (%d): a worker without a partition sits idle. Raise kafka.partitions or lower workers.replicas." (int $v.workers.replicas) $p) -}}
{{- end -}}
{{- if $v.workers.autoscaling.enabled -}}
{{- if gt (int $v.workers.autoscaling.maxReplicas) $p -}}
{{- fail (printf "workers.autoscaling.maxReplicas (%d) must not exceed kafka.partitions (%d)." (int $v.workers.autoscaling.maxReplicas) $p) -}}
{{- end -}}
{{- if gt (int $v.workers.autoscaling.minReplicas) (int $v.workers.autoscaling.maxReplicas) -}}
{{- fail (printf "workers.autoscaling.minReplicas (%d) must not exceed workers.autoscaling.maxReplicas (%d)." (int $v.workers.autoscaling.minReplicas) (int $v.workers.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.edge.enabled -}}
{{- if not $v.edge.interface -}}
{{- fail "edge.interface is required when edge.enabled is true: the node interface wired to the mirror/SPAN port." -}}
{{- end -}}
{{- if not $v.edge.site -}}
{{- fail "edge.site is required when edge.enabled is true: the site name put into every Kafka key." -}}
{{- end -}}
{{- end -}}
{{- if and (or $v.workers.enabled $v.replay.enabled) (not $v.stt.enabled) (empty $v.workers.stt.urls) -}}
{{- fail "workers.stt.urls is empty and stt.enabled is false: give the workers at least one STT server URL (ws://host:port)." -}}
{{- end -}}
{{- if $v.replay.enabled -}}
{{- if or (not $v.replay.from) (not $v.replay.to) -}}
{{- fail "replay.enabled is true: set replay.from and replay.to (ISO 8601 or epoch seconds)." -}}
{{- end -}}
{{- end -}}
{{- $t := $v.kafka.tls -}}
{{- if and $t.enabled $t.clientCert.enabled (not $t.clientCert.existingSecret) (or (not $t.clientCert.cert) (not $t.clientCert.key)) -}}
{{- fail "kafka.tls.clientCert is enabled: set clientCert.existingSecret, or both clientCert.cert and clientCert.key (PEM)." -}}
{{- end -}}
{{- $s := $v.kafka.sasl -}}
{{- if and $s.enabled (not $s.existingSecret) (or (not $s.username) (not $s.password)) -}}
{{- fail "kafka.sasl is enabled: set sasl.existingSecret, or both sasl.username and sasl.password." -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------------
     Kafka
     --------------------------------------------------------------------------------------------- */}}
{{- define "spanscribe.kafka.securityProtocol" -}}
{{- $tls := .Values.kafka.tls.enabled -}}
{{- $sasl := .Values.kafka.sasl.enabled -}}
{{- if and $tls $sasl -}}SASL_SSL{{- else if $tls -}}SSL{{- else if $sasl -}}SASL_PLAINTEXT{{- else -}}PLAINTEXT{{- end -}}
{{- end -}}

{{/* Does the chart create the Kafka credentials Secret? */}}
{{- define "spanscribe.kafka.chartSecret" -}}
{{- $k := .Values.kafka -}}
{{- if or (and $k.tls.enabled (not $k.tls.ca.existingSecret) $k.tls.ca.pem) (and $k.tls.enabled $k.tls.clientCert.enabled (not $k.tls.clientCert.existingSecret)) (and $k.sasl.enabled (not $k.sasl.existingSecret)) -}}true{{- end -}}
{{- end -}}

{{/* Name of the chart-created Kafka Secret; (dict "ctx" $ "hook" true) names the hook copy used by
     the topics Job, which runs before the release's own resources exist. */}}
{{- define "spanscribe.kafka.chartSecretName" -}}
{{- include "spanscribe.componentName" (dict "ctx" .ctx "component" (ternary "kafka-hook" "kafka" (default false .hook))) -}}
{{- end -}}

{{/* env vars for Kafka: (dict "ctx" $ "hook" bool) */}}
{{- define "spanscribe.kafka.env" -}}
{{- $ := .ctx -}}
{{- $k := $.Values.kafka -}}
{{- $own := include "spanscribe.kafka.chartSecretName" . -}}
- name: SPANSCRIBE_BOOTSTRAP_SERVERS
  value: {{ $k.bootstrapServers | quote }}
- name: SPANSCRIBE_TOPIC_PREFIX
  value: {{ $k.topicPrefix | quote }}
- name: SPANSCRIBE_KAFKA_SECURITY_PROTOCOL
  value: {{ include "spanscribe.kafka.securityProtocol" $ }}
{{- if $k.tls.enabled }}
{{- if or $k.tls.ca.existingSecret $k.tls.ca.pem }}
- name: SPANSCRIBE_KAFKA_SSL_CA_LOCATION
  value: /etc/spanscribe/kafka/ca/ca.crt
{{- end }}
{{- if $k.tls.clientCert.enabled }}
- name: SPANSCRIBE_KAFKA_SSL_CERTIFICATE_LOCATION
  value: /etc/spanscribe/kafka/client/tls.crt
- name: SPANSCRIBE_KAFKA_SSL_KEY_LOCATION
  value: /etc/spanscribe/kafka/client/tls.key
{{- end }}
{{- end }}
{{- if $k.sasl.enabled }}
- name: SPANSCRIBE_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
{{- if and $k.sasl.existingSecret $k.sasl.username }}
- name: SPANSCRIBE_KAFKA_SASL_USERNAME
  value: {{ $k.sasl.username | quote }}
{{- else }}
- name: SPANSCRIBE_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ default $own $k.sasl.existingSecret }}
      key: {{ ternary $k.sasl.usernameKey "sasl-username" (not (empty $k.sasl.existingSecret)) }}
{{- end }}
- name: SPANSCRIBE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default $own $k.sasl.existingSecret }}
      key: {{ ternary $k.sasl.passwordKey "sasl-password" (not (empty $k.sasl.existingSecret)) }}
{{- end }}
{{- range $key, $val := $k.config }}
- name: SPANSCRIBE_KAFKA_{{ $key | replace "." "_" | upper }}
  value: {{ $val | toString | quote }}
{{- end }}
{{- end -}}

{{/* volumeMounts for Kafka TLS files */}}
{{- define "spanscribe.kafka.volumeMounts" -}}
{{- $k := .Values.kafka -}}
{{- if $k.tls.enabled }}
{{- if or $k.tls.ca.existingSecret $k.tls.ca.pem }}
- name: kafka-ca
  mountPath: /etc/spanscribe/kafka/ca
  readOnly: true
{{- end }}
{{- if $k.tls.clientCert.enabled }}
- name: kafka-client-cert
  mountPath: /etc/spanscribe/kafka/client
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* volumes for Kafka TLS files: (dict "ctx" $ "hook" bool) */}}
{{- define "spanscribe.kafka.volumes" -}}
{{- $k := .ctx.Values.kafka -}}
{{- $own := include "spanscribe.kafka.chartSecretName" . -}}
{{- if $k.tls.enabled }}
{{- if or $k.tls.ca.existingSecret $k.tls.ca.pem }}
- name: kafka-ca
  secret:
    secretName: {{ default $own $k.tls.ca.existingSecret }}
    defaultMode: 0444
    items:
      - key: {{ ternary $k.tls.ca.key "ca.crt" (not (empty $k.tls.ca.existingSecret)) }}
        path: ca.crt
{{- end }}
{{- if $k.tls.clientCert.enabled }}
- name: kafka-client-cert
  secret:
    secretName: {{ default $own $k.tls.clientCert.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ ternary $k.tls.clientCert.certKey "tls.crt" (not (empty $k.tls.clientCert.existingSecret)) }}
        path: tls.crt
      - key: {{ ternary $k.tls.clientCert.keyKey "tls.key" (not (empty $k.tls.clientCert.existingSecret)) }}
        path: tls.key
{{- end }}
{{- end }}
{{- end -}}

{{/* The Kafka Secret's data (shared by the release Secret and its hook copy). */}}
{{- define "spanscribe.kafka.secretData" -}}
{{- $k := .Values.kafka -}}
{{- if and $k.tls.enabled (not $k.tls.ca.existingSecret) $k.tls.ca.pem }}
ca.crt: {{ $k.tls.ca.pem | b64enc }}
{{- end }}
{{- if and $k.tls.enabled $k.tls.clientCert.enabled (not $k.tls.clientCert.existingSecret) }}
tls.crt: {{ $k.tls.clientCert.cert | b64enc }}
tls.key: {{ $k.tls.clientCert.key | b64enc }}
{{- end }}
{{- if and $k.sasl.enabled (not $k.sasl.existingSecret) }}
sasl-username: {{ $k.sasl.username | b64enc }}
sasl-password: {{ $k.sasl.password | b64enc }}
{{- end }}
{{- end -}}

{{/* STT URLs the workers use. */}}
{{- define "spanscribe.stt.urls" -}}
{{- if .Values.workers.stt.urls -}}
{{- toJson .Values.workers.stt.urls -}}
{{- else -}}
{{- list (printf "ws://%s:%d" (include "spanscribe.componentName" (dict "ctx" . "component" "stt")) (int .Values.stt.port)) | toJson -}}
{{- end -}}
{{- end -}}

{{/* Shared restricted container security context, plus a writable /tmp. */}}
{{- define "spanscribe.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}
{{- define "spanscribe.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}
