/**
 * Errors of OTA bundles. Each names the bundle (and its version when known) and why it was refused;
 * `code` is the `error` field of the HTTP answer and `status` its HTTP status.
 */

/** Base of every bundle refusal; callers check `name` (or `code`), never the message. */
export class BundleError extends Error {
  override name = "BundleError";
  /** Machine-readable reason, e.g. `bad_signature`. */
  readonly code: string = "bundle_refused";
  /** HTTP status of the refusal. */
  readonly status: number = 422;
}

/** Not a bundle: not CBOR, wrong shape, missing fields, or a manifest for another runtime. */
export class BundleFormatError extends BundleError {
  override name = "BundleFormatError";
  override readonly code = "bad_bundle";
  override readonly status = 400;
}

/** No signature (or too few) verifies against the trust store. */
export class BundleSignatureError extends BundleError {
  override name = "BundleSignatureError";
  override readonly code = "bad_signature";
}

/** A file's size or SHA-256 differs from the manifest. */
export class BundleHashError extends BundleError {
  override name = "BundleHashError";
  override readonly code = "bad_hash";
}

/** The manifest's `expires` has passed (frozen or replayed metadata). */
export class BundleExpiredError extends BundleError {
  override name = "BundleExpiredError";
  override readonly code = "expired";
}

/** The release number is not above the active one, or it already failed here. */
export class BundleRollbackError extends BundleError {
  override name = "BundleRollbackError";
  override readonly code = "stale_release";
  override readonly status = 409;
}

/** A path that would leave the release directory, or an entry that is not a plain file. */
export class BundlePathError extends BundleError {
  override name = "BundlePathError";
  override readonly code = "bad_path";
}

/** The bundle, a file or the file count exceeds the device's limits. */
export class BundleTooLargeError extends BundleError {
  override name = "BundleTooLargeError";
  override readonly code = "too_large";
  override readonly status = 413;
}

/** The manifest's target (runtimes, minimum Outpost version) excludes this device. */
export class BundleTargetError extends BundleError {
  override name = "BundleTargetError";
  override readonly code = "wrong_target";
}

/** The release verified but its handlers did not all load; nothing was switched. */
export class BundleActivationError extends BundleError {
  override name = "BundleActivationError";
  override readonly code = "activation_failed";
}

/** Another bundle is being installed or is in probation. */
export class BundleBusyError extends BundleError {
  override name = "BundleBusyError";
  override readonly code = "busy";
  override readonly status = 409;
}

/** The fleet's bundle could not be fetched from the hub (unreachable, missing object); tried again later. */
export class FleetFetchError extends BundleError {
  override name = "FleetFetchError";
  override readonly code = "fetch_failed";
  override readonly status = 502;
}
