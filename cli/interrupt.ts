// Ctrl-C for commands that own or follow work on a server: the first press asks the command to wind down (cancel
// its job, stop following), a second one gives up waiting.
//
// Why the listener stays registered for the whole command instead of `process.once`: on a terminal, log-update
// hides the cursor through cli-cursor → restore-cursor → signal-exit, and signal-exit's SIGINT listener re-raises
// the signal (killing the process, exit 130) when it finds itself the only SIGINT listener left. A `once` listener
// has already removed itself by the time signal-exit's runs, so that check passed and the process died before the
// cancel reached the server. `kill -INT` from a script never met this: without a terminal nothing hid the cursor,
// so signal-exit was never loaded. A listener that stays until the command is done keeps every such library's
// "am I alone?" check false.

/** Exit status of a command the user interrupted without its work reaching an outcome (128 + SIGINT). */
export const interruptedExitStatus = 130;

/**
 * Call `first` on the first Ctrl-C (SIGINT) and `again` on every later one, until the returned function is called.
 * With nothing to run for `again`, a second Ctrl-C exits at once with status 130.
 */
export function onInterrupt(first: () => void, again?: () => void): () => void {
  let presses = 0;
  const listener = () => {
    presses++;
    if (presses === 1) first();
    else if (again) again();
    else process.exit(interruptedExitStatus);
  };
  process.on('SIGINT', listener);
  return () => {
    process.off('SIGINT', listener);
  };
}
