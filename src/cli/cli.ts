/**
 * The `chatgate` command. Parsing is commander's; every option's flag, environment form and
 * default come from the table in config.ts. A bad option: one line on stderr, exit code 2.
 */
import { Command, CommanderError, Option } from 'commander';
import { commandOptions, OptionError, parseConfig, type CommandConfig, type CommandName } from '../config.ts';
import { ChatgateError, ChatgateErrorCode } from '../errors.ts';
import { commands } from './commands.ts';

const descriptions: Record<CommandName, string> = {
  dev: 'run nats-server, the auth service and one gateway on this machine',
  nats: 'run a nats-server (single node or cluster member)',
  auth: 'run the auth service',
  gateway: 'run a gateway node',
  token: 'print one signed JWT (dev keys)',
  jwks: 'print the public JWK Set (dev keys)',
  revoke: 'revoke a token (--jti) or every token of a user (--sub) on every node',
  machines: 'write the state machine diagrams (Mermaid) to docs/machines.md',
  replay: 'replay recorded actors (FILE) through their machines: exit 0 if all match, 1 if one diverges, 2 for a bad file',
};

/** Positional arguments, for the commands that take one. */
const commandArguments: Partial<Record<CommandName, string>> = { replay: '<file>' };

function buildProgram(): Command {
  const program = new Command('chatgate')
    .description('a horizontally scaled WebSocket chat gateway')
    .exitOverride()
    .showSuggestionAfterError(false);
  for (const name of Object.keys(commandOptions) as CommandName[]) {
    const command = program.command(name).description(descriptions[name]).exitOverride();
    // Each table key is the camelCase of its flag, which is the name commander files it under.
    for (const spec of Object.values(commandOptions[name])) {
      const option = new Option(spec.flag, spec.description).env(spec.env);
      if ('default' in spec && spec.default !== undefined) option.default(spec.default);
      command.addOption(option);
    }
    const argument = commandArguments[name];
    if (argument) command.argument(argument);
    // Commander passes the positional arguments first, then the options and the command.
    command.action(async (...params: unknown[]) => {
      const raw = params.at(-2) as Record<string, unknown>;
      const args = params.slice(0, -2) as string[];
      const config = parseConfig(name, raw);
      if (name === 'token' && (config as CommandConfig<'token'>).sub === undefined) {
        throw new OptionError('missing --sub (TOKEN_SUB)');
      }
      await (commands[name] as (c: typeof config, a: string[]) => Promise<void>)(config, args);
    });
  }
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version print and succeed; every other parse error was printed by commander.
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    if (err instanceof OptionError) {
      process.stderr.write(`chatgate: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof ChatgateError) {
      process.stderr.write(`chatgate: ${err.message}\n`);
      process.exit(err.code === ChatgateErrorCode.badOption ? 2 : 1);
    }
    process.stderr.write(`chatgate: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
