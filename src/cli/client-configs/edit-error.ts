/**
 * edit-error: why `authkeep setup` did not change a client's config file: one line naming the file
 * and what is wrong, and a hint. The file is always left untouched when this is thrown.
 *
 * Not for: bad command-line input (that is a UsageError, exit 2).
 */
export class ConfigEditError extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
    this.name = 'ConfigEditError';
  }
}
