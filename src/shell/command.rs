//! The shell's command table and parser (chapter 13, "The shell").
//!
//! A command is one entry in a static table: its name, a usage line for its arguments, a
//! one-line description, how many arguments it takes, and the function that runs it. Adding a
//! command is adding an entry; `help` is generated from the table, and so are the complaints
//! about a wrong number of arguments. A line is split at ASCII whitespace: the first word picks
//! the command, the rest are its arguments. Nothing here allocates or knows the hardware, so
//! host tests throw arbitrary strings at it.

use core::fmt::{self, Write};

use super::line::Terminal;

/// Why a command could not do what was asked: it has already said what was wrong, and the
/// shell follows with the command's usage line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadUsage;

/// What a command's function returns.
pub type Outcome = Result<(), BadUsage>;

/// One shell command. `C` is what commands act on: the kernel's shell state, or a test double.
pub struct Command<C> {
    pub name: &'static str,
    /// The arguments, as `help` shows them: `[name]`, `<name>`, or "".
    pub args: &'static str,
    /// One line: what the command does (and what it ends, if anything).
    pub about: &'static str,
    pub min_args: usize,
    pub max_args: usize,
    pub run: fn(&mut C, &[&str]) -> Outcome,
}

/// The most words a line may have; more cannot be a valid command line.
pub const MAX_WORDS: usize = 8;

/// The words of a line, without allocating.
pub struct Words<'a> {
    words: [&'a str; MAX_WORDS],
    len: usize,
    /// How many words the line had, even beyond `MAX_WORDS`.
    pub total: usize,
}

impl<'a> Words<'a> {
    pub fn split(line: &'a str) -> Self {
        let mut words = Words {
            words: [""; MAX_WORDS],
            len: 0,
            total: 0,
        };
        for word in line.split_ascii_whitespace() {
            if words.len < MAX_WORDS {
                words.words[words.len] = word;
                words.len += 1;
            }
            words.total += 1;
        }
        words
    }

    pub fn as_slice(&self) -> &[&'a str] {
        &self.words[..self.len]
    }
}

/// `format_args!` to a `Terminal`.
pub fn print(term: &mut impl Terminal, args: fmt::Arguments<'_>) {
    struct Adapter<'t, T: Terminal>(&'t mut T);
    impl<T: Terminal> Write for Adapter<'_, T> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.write(s);
            Ok(())
        }
    }
    let _ = Adapter(term).write_fmt(args);
}

/// `usage: name args`
pub fn print_usage<C: Terminal>(term: &mut C, command: &Command<C>) {
    let space = if command.args.is_empty() { "" } else { " " };
    print(
        term,
        format_args!("usage: {}{space}{}\n", command.name, command.args),
    );
}

/// `help`'s listing: one line per command, usage then description, in table order.
pub fn print_help<C: Terminal>(term: &mut C, table: &[Command<C>]) {
    let width = table
        .iter()
        .map(|c| c.name.len() + 1 + c.args.len())
        .max()
        .unwrap_or(0);
    for c in table {
        let mut usage = crate::logger::LineBuffer::new();
        let _ = write!(usage, "{} {}", c.name, c.args);
        let usage = usage.as_str().trim_end();
        print(term, format_args!("  {usage:<width$}  {}\n", c.about));
    }
}

/// What `execute` found the line to be (the tests check it; the shell ignores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    Empty,
    Unknown,
    WrongArgCount,
    Ran,
    RanBadUsage,
}

/// Find the command a line names and run it, or say what is wrong with the line.
pub fn execute<C: Terminal>(table: &[Command<C>], ctx: &mut C, line: &str) -> Parsed {
    let words = Words::split(line);
    let Some((&name, args)) = words.as_slice().split_first() else {
        return Parsed::Empty;
    };
    let Some(command) = table.iter().find(|c| c.name == name) else {
        print(
            ctx,
            format_args!(
                "{}: unknown command; the commands are:",
                name.escape_debug()
            ),
        );
        for c in table {
            print(ctx, format_args!(" {}", c.name));
        }
        print(ctx, format_args!("\n(type help for their usage)\n"));
        return Parsed::Unknown;
    };
    let given = words.total - 1;
    if given < command.min_args || given > command.max_args {
        let wanted = match (command.min_args, command.max_args) {
            (0, 0) => "no arguments",
            (1, 1) => "one argument",
            (0, 1) => "at most one argument",
            (0, 2) => "at most two arguments",
            (1, 2) => "one or two arguments",
            _ => "a different number of arguments",
        };
        print(
            ctx,
            format_args!("{}: takes {wanted}, got {given}\n", command.name),
        );
        print_usage(ctx, command);
        return Parsed::WrongArgCount;
    }
    match (command.run)(ctx, args) {
        Ok(()) => Parsed::Ran,
        Err(BadUsage) => {
            print_usage(ctx, command);
            Parsed::RanBadUsage
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        out: String,
        calls: Vec<Vec<String>>,
    }

    impl Terminal for Fake {
        fn write(&mut self, text: &str) {
            self.out.push_str(text);
        }
    }

    fn record(f: &mut Fake, args: &[&str]) -> Outcome {
        f.calls.push(args.iter().map(|s| s.to_string()).collect());
        Ok(())
    }

    fn picky(f: &mut Fake, args: &[&str]) -> Outcome {
        if args[0] == "fault" {
            record(f, args)
        } else {
            f.write("no such demo\n");
            Err(BadUsage)
        }
    }

    const TABLE: &[Command<Fake>] = &[
        Command {
            name: "cpus",
            args: "",
            about: "list the CPUs",
            min_args: 0,
            max_args: 0,
            run: record,
        },
        Command {
            name: "test",
            args: "[name]",
            about: "run the in-kernel tests",
            min_args: 0,
            max_args: 1,
            run: record,
        },
        Command {
            name: "demo",
            args: "<name>",
            about: "run a demo (ends the session)",
            min_args: 1,
            max_args: 1,
            run: picky,
        },
    ];

    #[test]
    fn words_split_at_any_ascii_whitespace() {
        let w = Words::split("  test\t foundation  ");
        assert_eq!(w.as_slice(), ["test", "foundation"]);
        assert_eq!(w.total, 2);
        let many = Words::split("a b c d e f g h i j");
        assert_eq!(many.as_slice().len(), MAX_WORDS);
        assert_eq!(many.total, 10);
    }

    #[test]
    fn a_known_command_runs_with_its_arguments() {
        let mut f = Fake::default();
        assert_eq!(execute(TABLE, &mut f, "test foundation"), Parsed::Ran);
        assert_eq!(execute(TABLE, &mut f, "  test"), Parsed::Ran);
        assert_eq!(f.calls, [vec!["foundation".to_string()], vec![]]);
        assert_eq!(f.out, "");
        assert_eq!(execute(TABLE, &mut f, "   "), Parsed::Empty);
    }

    #[test]
    fn an_unknown_command_is_named_and_the_commands_listed() {
        let mut f = Fake::default();
        assert_eq!(execute(TABLE, &mut f, "bogus 1 2"), Parsed::Unknown);
        assert_eq!(
            f.out,
            "bogus: unknown command; the commands are: cpus test demo\n(type help for their usage)\n"
        );
        assert!(f.calls.is_empty());
    }

    #[test]
    fn a_wrong_argument_count_prints_the_usage_and_runs_nothing() {
        let mut f = Fake::default();
        assert_eq!(execute(TABLE, &mut f, "cpus now"), Parsed::WrongArgCount);
        assert_eq!(execute(TABLE, &mut f, "demo"), Parsed::WrongArgCount);
        assert_eq!(
            execute(TABLE, &mut f, "test a b c d e f g h i j"),
            Parsed::WrongArgCount
        );
        assert!(f.calls.is_empty());
        assert_eq!(
            f.out,
            "cpus: takes no arguments, got 1\nusage: cpus\n\
             demo: takes one argument, got 0\nusage: demo <name>\n\
             test: takes at most one argument, got 10\nusage: test [name]\n"
        );
    }

    #[test]
    fn a_bad_argument_is_explained_by_the_command_then_the_usage_follows() {
        let mut f = Fake::default();
        assert_eq!(execute(TABLE, &mut f, "demo nope"), Parsed::RanBadUsage);
        assert_eq!(f.out, "no such demo\nusage: demo <name>\n");
    }

    #[test]
    fn help_lists_every_command_aligned() {
        let mut f = Fake::default();
        print_help(&mut f, TABLE);
        assert_eq!(
            f.out,
            "  cpus         list the CPUs\n  test [name]  run the in-kernel tests\n  demo <name>  run a demo (ends the session)\n"
        );
    }

    #[test]
    fn arbitrary_strings_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet: Vec<char> = "cpustedmo \t\n\r\u{0}é€😀[]<>\"\\".chars().collect();
        for _ in 0..20_000 {
            let mut f = Fake::default();
            let mut line = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for i in 0..(state % 40) {
                line.push(alphabet[((state >> (i % 50)) as usize + i as usize) % alphabet.len()]);
            }
            execute(TABLE, &mut f, &line);
        }
    }
}
