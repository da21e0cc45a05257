#!/bin/sh
# Rebuild src/facerecon/io/assets/viewer.js (one minified classic script, window.FaceViewer)
# from the exact versions pinned in package-lock.json. Needs node >= 18 and the npm registry.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npx --no-install esbuild src/main.js \
  --bundle --minify --format=iife --global-name=FaceViewer --target=es2018 \
  --legal-comments=inline \
  --banner:js="/*! facerecon report viewer. Bundles three.js $(node -p "require('./node_modules/three/package.json').version") (https://threejs.org), Copyright 2010-2026 Three.js Authors, MIT License. */" \
  --outfile=../src/facerecon/io/assets/viewer.js
ls -l ../src/facerecon/io/assets/viewer.js
