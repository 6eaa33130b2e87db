//! The console's keys: one table drives both key handling and the `?` help overlay.
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    NextStage,
    PrevStage,
    TogglePause,
    RateUp,
    RateDown,
    RestartStage,
    Baseline,
    ToggleNotes,
    ToggleKubectl,
    SaveReport,
    ToggleHelp,
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Right,
    Left,
    Esc,
    Ctrl(char),
}

pub struct Binding {
    pub keys: &'static [Key],
    /// How the keys are written in the help and the footer.
    pub label: &'static str,
    pub action: Action,
    pub help: &'static str,
}

pub const KEYMAP: &[Binding] = &[
    Binding { keys: &[Key::Char(' '), Key::Right], label: "space/→", action: Action::NextStage, help: "next stage" },
    Binding { keys: &[Key::Left], label: "←", action: Action::PrevStage, help: "previous stage" },
    Binding { keys: &[Key::Char('p')], label: "p", action: Action::TogglePause, help: "pause / resume the load" },
    Binding { keys: &[Key::Char('+'), Key::Char('=')], label: "+", action: Action::RateUp, help: "offered rate +10 %" },
    Binding {
        keys: &[Key::Char('-'), Key::Char('_')],
        label: "-",
        action: Action::RateDown,
        help: "offered rate -10 %",
    },
    Binding { keys: &[Key::Char('r')], label: "r", action: Action::RestartStage, help: "restart the stage" },
    Binding { keys: &[Key::Char('b')], label: "b", action: Action::Baseline, help: "reset to baseline (first stage)" },
    Binding { keys: &[Key::Char('n')], label: "n", action: Action::ToggleNotes, help: "show / hide speaker notes" },
    Binding { keys: &[Key::Char('k')], label: "k", action: Action::ToggleKubectl, help: "show / hide kubectl panel" },
    Binding { keys: &[Key::Char('s')], label: "s", action: Action::SaveReport, help: "write the report now" },
    Binding { keys: &[Key::Char('?'), Key::Esc], label: "?/Esc", action: Action::ToggleHelp, help: "this help" },
    Binding {
        keys: &[Key::Char('q'), Key::Ctrl('c')],
        label: "q",
        action: Action::Quit,
        help: "quit: load stops at once; cluster kept unless --teardown",
    },
];

fn key_of(ev: &KeyEvent) -> Option<Key> {
    if ev.modifiers.contains(KeyModifiers::CONTROL) {
        if let KeyCode::Char(c) = ev.code {
            return Some(Key::Ctrl(c.to_ascii_lowercase()));
        }
        return None;
    }
    match ev.code {
        KeyCode::Char(c) => Some(Key::Char(c)),
        KeyCode::Right => Some(Key::Right),
        KeyCode::Left => Some(Key::Left),
        KeyCode::Esc => Some(Key::Esc),
        _ => None,
    }
}

/// The action bound to a key press (releases and repeats of release are ignored).
pub fn action_for(ev: &KeyEvent) -> Option<Action> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    let k = key_of(ev)?;
    KEYMAP.iter().find(|b| b.keys.contains(&k)).map(|b| b.action)
}

/// The label of an action's keys (for the footer).
pub fn label_of(action: Action) -> &'static str {
    KEYMAP.iter().find(|b| b.action == action).map(|b| b.label).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn spec_keys_are_bound() {
        assert_eq!(action_for(&press(KeyCode::Char(' '))), Some(Action::NextStage));
        assert_eq!(action_for(&press(KeyCode::Right)), Some(Action::NextStage));
        assert_eq!(action_for(&press(KeyCode::Left)), Some(Action::PrevStage));
        assert_eq!(action_for(&press(KeyCode::Char('p'))), Some(Action::TogglePause));
        assert_eq!(action_for(&press(KeyCode::Char('+'))), Some(Action::RateUp));
        assert_eq!(action_for(&press(KeyCode::Char('-'))), Some(Action::RateDown));
        assert_eq!(action_for(&press(KeyCode::Char('r'))), Some(Action::RestartStage));
        assert_eq!(action_for(&press(KeyCode::Char('b'))), Some(Action::Baseline));
        assert_eq!(action_for(&press(KeyCode::Char('n'))), Some(Action::ToggleNotes));
        assert_eq!(action_for(&press(KeyCode::Char('k'))), Some(Action::ToggleKubectl));
        assert_eq!(action_for(&press(KeyCode::Char('?'))), Some(Action::ToggleHelp));
        assert_eq!(action_for(&press(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(action_for(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Action::Quit));
        assert_eq!(action_for(&press(KeyCode::Char('z'))), None);
    }

    #[test]
    fn every_action_has_one_binding() {
        let mut seen = std::collections::HashSet::new();
        for b in KEYMAP {
            assert!(seen.insert(format!("{:?}", b.action)), "{:?} bound twice", b.action);
            assert!(!b.keys.is_empty());
        }
    }
}
