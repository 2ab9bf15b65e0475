export {
  SETTINGS,
  SETTING_KEYS,
  checkSettingValue,
  defaultCacheDir,
  describeSettings,
  findSettingKey,
  isRemoteModelSpec,
  isSettingKey,
  parseSettingValue,
  type Checked,
  type SettingKey,
  type SettingSpec,
  type Settings,
} from "./schema.js";
export { configDir, configFilePath, deleteConfigValue, readConfigFile, readConfigValue, writeConfigValue } from "./store.js";
export {
  NO_MODEL_MESSAGE,
  requireModel,
  resolveAllSettings,
  resolveSetting,
  type FlagValue,
  type ResolvedSetting,
  type ResolvedSettings,
  type SettingSource,
} from "./resolve.js";
