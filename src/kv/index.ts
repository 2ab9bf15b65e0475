export { ProfileError } from "./errors.js";
export {
  MANIFEST_FILE,
  PROFILE_FORMAT,
  PROFILE_VERSION,
  WEIGHTS_FILE,
  formatManifest,
  parseManifest,
  type ProfileManifest,
  type ProfileModel,
  type Provenance,
  type SurrogateKind,
  type SurrogateSpec,
  type TauPoint,
} from "./manifest.js";
export { loadProfile, readManifest, resolveManifestPath, validateProfile, writeProfile, type Profile } from "./profile.js";
export { modelFingerprint, readModelIdentity, type ModelIdentity, type ModelIdentityFile } from "./fingerprint.js";
export { checkKvzapSupport, kvzapUnsupported, requireKvzapSupport, type KvzapUse } from "./attention.js";
export {
  findProfileForModel,
  listProfiles,
  profileSearchDirs,
  shippedProfilesDir,
  userProfilesDir,
  type ProfileDir,
  type ProfileEntry,
  type ProfileSource,
} from "./find.js";
export { compressionForTau, keepForTau, tauForTarget } from "./tau.js";
export { layerStats, parameterCount, tensorSlots, type LayerStats, type LayerWeights } from "./weights.js";
export {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  writeSafetensors,
  SafetensorsFormatError,
  type FloatDtype,
  type SafetensorsFile,
  type Tensor,
  type TensorToWrite,
} from "./safetensors.js";
