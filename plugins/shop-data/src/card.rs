/// Masks a card number so it can be logged and stored: every character but the last four
/// becomes `*` (`4123987754646678` → `************6678`). Numbers of four characters or fewer
/// are masked entirely, since they would otherwise appear in full.
pub fn mask_card(number: &str) -> String {
    let len = number.chars().count();
    let keep = if len > 4 { 4 } else { 0 };
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if i < len - keep { '*' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::mask_card;

    #[test]
    fn keeps_only_the_last_four() {
        assert_eq!(mask_card("4123987754646678"), "************6678");
        assert_eq!(mask_card("41234"), "*1234");
        assert_eq!(mask_card("4123"), "****");
        assert_eq!(mask_card(""), "");
        assert_eq!(mask_card("4é23456"), "***3456");
    }
}
