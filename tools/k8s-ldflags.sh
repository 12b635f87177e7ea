# The -ldflags every Kubernetes binary here is built with: stripped, and stamped with the version
# kubectl and the API server report (a module build carries no git metadata). Source it, then
#   go build -ldflags "$(k8s_ldflags v1.34.4)" ...
k8s_ldflags() {
  local version="$1" minor="${1#v1.}"
  minor="${minor%%.*}"
  printf '%s' "-s -w" \
    " -X k8s.io/component-base/version.gitVersion=$version" \
    " -X k8s.io/component-base/version.gitMajor=1" \
    " -X k8s.io/component-base/version.gitMinor=$minor" \
    " -X k8s.io/component-base/version.gitTreeState=clean" \
    " -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
}
