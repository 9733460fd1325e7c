-- Staff overrides. A contact's buying role set through the API (PUT /contacts/<id>/role) wins
-- over the role inferred from title and tags; NULL means infer. Manual stage overrides need no
-- column: they are stage_history rows with an actor, and evidence moves on from them.
ALTER TABLE contacts
    ADD COLUMN role_override text;
