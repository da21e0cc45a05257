// facerecon report viewer: shows one GLB (given as base64) in an element, with orbit controls.
// Built by build.sh into a single classic script exposing window.FaceViewer.mount(el, b64).
// State is written to the element: data-viewer-ready="1" once the mesh is shown, or
// data-viewer-error="<message>" when WebGL or the mesh fails; data-viewer-textured="1" when the
// mesh shows an image texture (the photo texture of `--texture photo`).
import {
  AnimationMixer,
  Box3,
  Clock,
  Color,
  DirectionalLight,
  HemisphereLight,
  PerspectiveCamera,
  REVISION,
  Scene,
  Sphere,
  TextureLoader,
  WebGLRenderer,
} from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

const BACKGROUND = 0x22262e; // rgb(34, 38, 46), the report's .viewer background
const FOV_DEG = 30;

export const version = '0.1.0';
export const threeRevision = REVISION;

/** Decode base64 text into an ArrayBuffer. */
export function decodeBase64(text) {
  const binary = atob(text.replace(/\s+/g, ''));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function markError(element, message) {
  element.removeAttribute('data-viewer-ready');
  element.setAttribute('data-viewer-error', message);
  const note = document.createElement('div');
  note.className = 'viewer-message';
  note.textContent = `3D view unavailable: ${message}`;
  element.appendChild(note);
}

function elementSize(element) {
  return [Math.max(1, element.clientWidth || 320), Math.max(1, element.clientHeight || 320)];
}

/** Place the camera in front of the object (+z) so its bounding sphere fills the view. */
function frame(camera, controls, object) {
  const sphere = new Box3().setFromObject(object).getBoundingSphere(new Sphere());
  const radius = sphere.radius > 0 ? sphere.radius : 1;
  const distance = (radius / Math.sin(((FOV_DEG / 2) * Math.PI) / 180)) * 1.05;
  camera.near = distance / 100;
  camera.far = distance * 100;
  camera.position.copy(sphere.center).add({ x: 0, y: 0, z: distance });
  camera.updateProjectionMatrix();
  controls.target.copy(sphere.center);
  controls.minDistance = radius * 0.2;
  controls.maxDistance = distance * 10;
  controls.update();
}

function disposeObject(object) {
  object.traverse((node) => {
    if (node.geometry) node.geometry.dispose();
    if (node.material) [].concat(node.material).forEach((m) => m.dispose());
  });
}

/**
 * Show the GLB mesh `glbBase64` inside `element` (which should have a size).
 * Returns a handle with dispose(), which frees the WebGL context.
 */
export function mount(element, glbBase64) {
  element.removeAttribute('data-viewer-error');
  element.removeAttribute('data-viewer-ready');
  let renderer;
  try {
    renderer = new WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  } catch (err) {
    markError(element, `WebGL unavailable (${(err && err.message) || err})`);
    return { dispose() {} };
  }
  const [width, height] = elementSize(element);
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setSize(width, height, false);
  renderer.setClearColor(new Color(BACKGROUND), 1);
  element.appendChild(renderer.domElement);

  const scene = new Scene();
  const camera = new PerspectiveCamera(FOV_DEG, width / height, 0.01, 100);
  scene.add(camera);
  scene.add(new HemisphereLight(0xffffff, 0x50505a, 1.6));
  const key = new DirectionalLight(0xffffff, 1.8);
  key.position.set(0.4, 0.6, 1.0);
  camera.add(key); // the light follows the view while orbiting

  const controls = new OrbitControls(camera, renderer.domElement);
  const render = () => renderer.render(scene, camera);
  controls.addEventListener('change', render);

  let resize = null;
  if (typeof ResizeObserver !== 'undefined') {
    resize = new ResizeObserver(() => {
      const [w, h] = elementSize(element);
      renderer.setSize(w, h, false);
      camera.aspect = w / h;
      camera.updateProjectionMatrix();
      render();
    });
    resize.observe(element);
  }

  let disposed = false;
  let content = null;
  let mixer = null;
  let frameRequest = 0;
  const clock = new Clock();
  // an animated GLB (a video's clip: morph targets + head pose) plays in a loop
  const tick = () => {
    if (disposed || !mixer) return;
    mixer.update(clock.getDelta());
    render();
    frameRequest = requestAnimationFrame(tick);
  };
  // Embedded textures load through an <img> (TextureLoader) instead of createImageBitmap: the
  // same pixels, and headless browsers' virtual time waits for image loads but not for
  // ImageBitmap decodes (the report's screenshot test would see no face).
  const loader = new GLTFLoader();
  loader.register((parser) => {
    parser.textureLoader = new TextureLoader(parser.options.manager);
    return { name: 'facerecon_image_textures' };
  });
  try {
    loader.parse(
      decodeBase64(glbBase64),
      '',
      (gltf) => {
        if (disposed) return;
        content = gltf.scene;
        scene.add(content);
        let vertices = 0;
        let textured = false;
        content.traverse((node) => {
          if (node.isMesh) vertices += node.geometry.getAttribute('position').count;
          if (node.isMesh && [].concat(node.material).some((m) => m.map)) textured = true;
        });
        frame(camera, controls, content);
        render();
        element.setAttribute('data-viewer-vertices', String(vertices));
        if (textured) element.setAttribute('data-viewer-textured', '1');
        if (gltf.animations && gltf.animations.length > 0) {
          mixer = new AnimationMixer(content);
          mixer.clipAction(gltf.animations[0]).play();
          element.setAttribute('data-viewer-animated', String(gltf.animations[0].duration));
          frameRequest = requestAnimationFrame(tick);
        }
        element.setAttribute('data-viewer-ready', '1');
      },
      (err) => markError(element, `cannot read mesh (${(err && err.message) || err})`),
    );
  } catch (err) {
    markError(element, `cannot read mesh (${(err && err.message) || err})`);
  }

  return {
    dispose() {
      if (disposed) return;
      disposed = true;
      if (frameRequest) cancelAnimationFrame(frameRequest);
      if (mixer) mixer.stopAllAction();
      if (resize) resize.disconnect();
      controls.dispose();
      if (content) disposeObject(content);
      renderer.dispose();
      renderer.forceContextLoss();
      renderer.domElement.remove();
      element.removeAttribute('data-viewer-ready');
      element.setAttribute('data-viewer-state', 'unloaded');
    },
  };
}
