{{- define "rollguard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rollguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rollguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.topology }}
{{- end -}}

{{- define "rollguard.labels" -}}
{{ include "rollguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "rollguard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where the pod finds what the configuration names. */}}
{{- define "rollguard.configDir" -}}/etc/rollguard/config{{- end -}}
{{- define "rollguard.signingDir" -}}/etc/rollguard/signing{{- end -}}
{{- define "rollguard.natsDir" -}}/etc/rollguard/nats{{- end -}}
{{- define "rollguard.webDir" -}}/etc/rollguard/web{{- end -}}
{{- define "rollguard.otlpDir" -}}/etc/rollguard/otlp{{- end -}}

{{- define "rollguard.signing" -}}
{{- if and (ne .Values.topology "sidecar") (or .Values.signing.secretName .Values.signing.seed) }}true{{ end -}}
{{- end -}}

{{- define "rollguard.signingSecret" -}}
{{- default (printf "%s-signing" (include "rollguard.fullname" .)) .Values.signing.secretName -}}
{{- end -}}

{{- define "rollguard.addr" -}}
{{- if .port }}{{ printf "%s:%d" .host (int .port) }}{{ end -}}
{{- end -}}

{{/*
rollguard.yml: .Values.config with what the chart decides from the values
laid over it, so that the listeners, mounts and Secrets agree with it.
*/}}
{{- define "rollguard.config" -}}
{{- $v := .Values -}}
{{- if not (has $v.topology (list "standalone" "central" "sidecar")) -}}
{{- fail (printf "topology %q: must be standalone, central or sidecar" $v.topology) -}}
{{- end -}}
{{- $c := deepCopy $v.config -}}
{{- if eq $v.topology "sidecar" -}}
{{- $_ := set $c "mode" "sidecar" -}}
{{- end -}}
{{- $otlpHost := ternary "127.0.0.1" "" (eq $v.topology "sidecar") -}}
{{- $otlp := dict "http_listen_address" (include "rollguard.addr" (dict "host" $otlpHost "port" $v.listeners.otlpHttp)) "grpc_listen_address" (include "rollguard.addr" (dict "host" $otlpHost "port" $v.listeners.otlpGrpc)) -}}
{{- if $v.otlp.credentials.secretName -}}
{{- $_ := set $otlp "authorization" (dict "credentials_file" (printf "%s/%s" (include "rollguard.otlpDir" .) $v.otlp.credentials.key)) -}}
{{- end -}}
{{- $_ := set $c "otlp" (mergeOverwrite (deepCopy (default dict $c.otlp)) $otlp) -}}
{{- if $v.web.credentials.secretName -}}
{{- $web := dict "authorization" (dict "credentials_file" (printf "%s/%s" (include "rollguard.webDir" .) $v.web.credentials.key)) -}}
{{- $_ := set $c "web" (mergeOverwrite (deepCopy (default dict $c.web)) $web) -}}
{{- end -}}
{{- if or (ne $v.topology "standalone") $v.nats.url -}}
{{- $nats := dict "url" (required (printf "nats.url: the %s topology needs an external NATS cluster" $v.topology) $v.nats.url) "replicas" (int $v.nats.replicas) -}}
{{- if $v.nats.credentials.secretName -}}
{{- $_ := set $nats "credentials_file" (printf "%s/%s" (include "rollguard.natsDir" .) $v.nats.credentials.key) -}}
{{- end -}}
{{- $_ := set $c "nats" (mergeOverwrite (deepCopy (default dict $c.nats)) $nats) -}}
{{- end -}}
{{- if eq $v.topology "central" -}}
{{- if not (include "rollguard.signing" .) -}}
{{- fail "signing: central replicas must share one signing seed: set signing.secretName (rollguard keygen) or signing.seed" -}}
{{- end -}}
{{- $_ := set $c "cluster" (mergeOverwrite (deepCopy (default dict $c.cluster)) (dict "lease_ttl" $v.cluster.leaseTTL)) -}}
{{- end -}}
{{- if include "rollguard.signing" . -}}
{{- $pb := deepCopy (default dict $c.playbook) -}}
{{- $_ := set $pb "signing" (mergeOverwrite (deepCopy (default dict $pb.signing)) (dict "seed_file" (printf "%s/%s" (include "rollguard.signingDir" .) $v.signing.key))) -}}
{{- $_ := set $c "playbook" $pb -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* The rollguard container, for every topology. */}}
{{- define "rollguard.container" -}}
{{- $v := .Values -}}
{{- $sidecar := eq $v.topology "sidecar" -}}
{{- $webAddr := ternary $v.sidecar.webListenAddress (printf ":%d" (int $v.listeners.web)) $sidecar -}}
- name: rollguard
  image: {{ include "rollguard.image" . }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - run
    - --config.file={{ include "rollguard.configDir" . }}/rollguard.yml
    - --storage.path=/data
    - --web.listen-address={{ $webAddr }}
  {{- if eq $v.topology "central" }}
  env:
    - name: ROLLGUARD_REPLICA_ID
      valueFrom:
        fieldRef: {fieldPath: metadata.name}
  {{- end }}
  ports:
    - {name: web, containerPort: {{ int (ternary (regexReplaceAll "^.*:" $webAddr "") (toString $v.listeners.web) $sidecar) }}}
    {{- if and $v.listeners.otlpGrpc (not $sidecar) }}
    - {name: otlp-grpc, containerPort: {{ int $v.listeners.otlpGrpc }}}
    {{- end }}
    {{- if and $v.listeners.otlpHttp (not $sidecar) }}
    - {name: otlp-http, containerPort: {{ int $v.listeners.otlpHttp }}}
    {{- end }}
  {{- if not (and $sidecar (or (hasPrefix "127.0.0.1:" $webAddr) (hasPrefix "localhost:" $webAddr) (hasPrefix "[::1]:" $webAddr))) }}
  {{- with $v.probes.liveness }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.probes.readiness }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  resources:
    {{- toYaml (ternary $v.sidecar.resources $v.resources $sidecar) | nindent 4 }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - {name: rollguard-config, mountPath: {{ include "rollguard.configDir" . }}, readOnly: true}
    - {name: rollguard-data, mountPath: /data}
    - {name: rollguard-tmp, mountPath: /tmp}
    {{- if include "rollguard.signing" . }}
    - {name: rollguard-signing, mountPath: {{ include "rollguard.signingDir" . }}, readOnly: true}
    {{- end }}
    {{- if and $v.nats.credentials.secretName (or (ne $v.topology "standalone") $v.nats.url) }}
    - {name: rollguard-nats, mountPath: {{ include "rollguard.natsDir" . }}, readOnly: true}
    {{- end }}
    {{- if $v.web.credentials.secretName }}
    - {name: rollguard-web, mountPath: {{ include "rollguard.webDir" . }}, readOnly: true}
    {{- end }}
    {{- if $v.otlp.credentials.secretName }}
    - {name: rollguard-otlp, mountPath: {{ include "rollguard.otlpDir" . }}, readOnly: true}
    {{- end }}
{{- end -}}

{{/* The volumes the container mounts, but the data one. */}}
{{- define "rollguard.volumes" -}}
{{- $v := .Values -}}
- name: rollguard-config
  configMap: {name: {{ include "rollguard.fullname" . }}}
- name: rollguard-tmp
  emptyDir: {}
{{- if include "rollguard.signing" . }}
- name: rollguard-signing
  secret: {secretName: {{ include "rollguard.signingSecret" . }}, defaultMode: 0440}
{{- end }}
{{- if and $v.nats.credentials.secretName (or (ne $v.topology "standalone") $v.nats.url) }}
- name: rollguard-nats
  secret: {secretName: {{ $v.nats.credentials.secretName }}, defaultMode: 0440}
{{- end }}
{{- if $v.web.credentials.secretName }}
- name: rollguard-web
  secret: {secretName: {{ $v.web.credentials.secretName }}, defaultMode: 0440}
{{- end }}
{{- if $v.otlp.credentials.secretName }}
- name: rollguard-otlp
  secret: {secretName: {{ $v.otlp.credentials.secretName }}, defaultMode: 0440}
{{- end }}
{{- end -}}

{{- define "rollguard.podMeta" -}}
labels:
  {{- include "rollguard.selectorLabels" . | nindent 2 }}
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include "rollguard.config" . | sha256sum }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{- define "rollguard.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
