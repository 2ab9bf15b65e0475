// The process's resident memory as the OS counts it (Linux /proc/self/status), with the peak reset between runs
// (writing 5 to /proc/self/clear_refs resets VmHWM, Linux 4.0+). Null where the OS does not offer it.
import { readFileSync, writeFileSync } from "node:fs";

function statusKiB(field: "VmRSS" | "VmHWM"): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resident bytes now. */
export function residentBytes(): number | null {
  return statusKiB("VmRSS");
}

/** The most resident bytes since the last resetPeakResident (or the process's start). */
export function peakResidentBytes(): number | null {
  return statusKiB("VmHWM");
}

/** Starts a new peak from the resident bytes now; false when the OS cannot. */
export function resetPeakResident(): boolean {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}
