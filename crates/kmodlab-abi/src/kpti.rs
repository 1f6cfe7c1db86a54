//! The kernel/user page-table split (`kpti=` on the kernel command line).
//!
//! On kvm_pvm the hypervisor keeps one shadow page table per guest CR3, shared by guest user
//! and supervisor mode, so user mode can read and write whatever the kernel touched under the
//! same CR3 (`results/pvm/2026-12-01-isolation-and-preemption.md`, Q1), and kernel pages cannot
//! be made supervisor-only (Q2). The only isolation there is a second PML4 for user mode (Q3),
//! which the kernel switches to on every exit to user mode and away from on every entry. On
//! hardware KVM the U/S bits isolate the kernel and the split only costs time.
//!
//! The VMM's `--kpti on|off|auto` becomes `kpti=on` / `kpti=off` / nothing on the command
//! line; the kernel resolves [`Kpti::Auto`] with [`Kpti::resolve`].

/// The command-line key.
pub const CMDLINE_KEY: &str = "kpti";

/// What the command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kpti {
    /// Always split.
    On,
    /// Never split.
    Off,
    /// Split where nothing else isolates the kernel: on kvm_pvm (the VIF page registered).
    #[default]
    Auto,
}

/// A `kpti=` value that is not `on`, `off` or `auto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadKpti(pub alloc::string::String);

impl core::fmt::Display for BadKpti {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "kpti={:?}: expected on, off or auto", self.0)
    }
}

impl core::str::FromStr for Kpti {
    type Err = BadKpti;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Kpti::On),
            "off" => Ok(Kpti::Off),
            "auto" => Ok(Kpti::Auto),
            other => Err(BadKpti(other.into())),
        }
    }
}

impl Kpti {
    /// The last `kpti=` word of `cmdline` (as Linux, a later word overrides an earlier one);
    /// [`Kpti::Auto`] if there is none.
    pub fn from_cmdline(cmdline: &str) -> Result<Kpti, BadKpti> {
        let mut mode = Kpti::Auto;
        for word in cmdline.split_whitespace() {
            if let Some(v) = word
                .strip_prefix(CMDLINE_KEY)
                .and_then(|r| r.strip_prefix('='))
            {
                mode = v.parse()?;
            }
        }
        Ok(mode)
    }

    /// The command-line word that asks for this mode (`None` for [`Kpti::Auto`], the
    /// kernel's default).
    pub fn cmdline_word(self) -> Option<&'static str> {
        match self {
            Kpti::On => Some("kpti=on"),
            Kpti::Off => Some("kpti=off"),
            Kpti::Auto => None,
        }
    }

    /// The value as written after `kpti=` and `--kpti`.
    pub fn name(self) -> &'static str {
        match self {
            Kpti::On => "on",
            Kpti::Off => "off",
            Kpti::Auto => "auto",
        }
    }

    /// Whether to split, for a guest whose VIF page is registered (`pvm`) or not.
    pub fn resolve(self, pvm: bool) -> bool {
        match self {
            Kpti::On => true,
            Kpti::Off => false,
            Kpti::Auto => pvm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_word() {
        assert_eq!(Kpti::from_cmdline(""), Ok(Kpti::Auto));
        assert_eq!(Kpti::from_cmdline("quiet kpti=on"), Ok(Kpti::On));
        assert_eq!(Kpti::from_cmdline("kpti=on kpti=off"), Ok(Kpti::Off));
        assert_eq!(Kpti::from_cmdline("kpti=auto quiet"), Ok(Kpti::Auto));
        // Another key that starts with the same letters is not this one.
        assert_eq!(Kpti::from_cmdline("kptix=on kpti"), Ok(Kpti::Auto));
    }

    #[test]
    fn names_parse_back() {
        for k in [Kpti::On, Kpti::Off, Kpti::Auto] {
            assert_eq!(k.name().parse::<Kpti>(), Ok(k));
        }
    }

    #[test]
    fn refuses_other_values() {
        let e = Kpti::from_cmdline("kpti=yes").unwrap_err();
        assert_eq!(e.to_string(), "kpti=\"yes\": expected on, off or auto");
        assert_eq!(Kpti::from_cmdline("kpti="), Err(BadKpti("".into())));
    }

    #[test]
    fn resolves_auto_by_flavour() {
        assert!(Kpti::Auto.resolve(true));
        assert!(!Kpti::Auto.resolve(false));
        assert!(Kpti::On.resolve(false));
        assert!(!Kpti::Off.resolve(true));
        for m in [Kpti::On, Kpti::Off] {
            let word = m.cmdline_word().unwrap();
            assert_eq!(Kpti::from_cmdline(word), Ok(m));
        }
        assert_eq!(Kpti::Auto.cmdline_word(), None);
    }
}
