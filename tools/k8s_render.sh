#!/usr/bin/env bash
# Render one overlay of deploy/kubernetes (or every one) with its images taken from a registry at a tag:
#   tools/k8s_render.sh neuron-inf2-xlarge 123456789012.dkr.ecr.us-east-1.amazonaws.com 0.1.0 | kubectl apply -f -
# The overlays name what docker/ builds (blip-vqa-neuron:0.1.0, ...); this prefixes the registry and sets the tag
# through a throwaway kustomization on top, so nothing committed changes.
set -euo pipefail
cd "$(dirname "$0")/.."
overlay=${1:?usage: tools/k8s_render.sh OVERLAY|all [REGISTRY] [TAG]}
registry=${2:-}
tag=${3:-}
if [ "$overlay" = all ]; then
    for dir in deploy/kubernetes/overlays/*/; do
        echo "---"
        "$0" "$(basename "$dir")" "$registry" "$tag"
    done
    exit 0
fi
source_dir="deploy/kubernetes/overlays/$overlay"
[ -f "$source_dir/kustomization.yaml" ] || { echo "no overlay $overlay under deploy/kubernetes/overlays" >&2; exit 2; }
if [ -z "$registry$tag" ]; then
    exec kubectl kustomize "$source_dir"
fi
# Beside the overlays: kustomize takes only relative resource paths.
scratch=$(mktemp -d deploy/kubernetes/.render-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
{
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources: [../overlays/$overlay]"
    echo "images:"
    # Only the images docker/ builds (bare names): a third-party image keeps its own registry and tag.
    for image in $(kubectl kustomize "$source_dir" | sed -n 's/^ *image: \([^:]*\).*/\1/p' | grep -v / | sort -u); do
        echo "  - name: $image"
        [ -n "$registry" ] && echo "    newName: $registry/$image"
        [ -n "$tag" ] && echo "    newTag: \"$tag\""
    done
} > "$scratch/kustomization.yaml"
kubectl kustomize "$scratch"
