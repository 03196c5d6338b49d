-- Energy statements as issued (issue 35, item 5): each PDF, Markdown, LaTeX or JSON statement gets an
-- id and the SHA-256 digest of its JSON form, printed on it with a link anyone can open
-- (GET /s/{id}) to check that it is authentic and whether the data behind it has changed since.
-- `shown` keeps what the statement showed (its summary's labelled values, and each job's IT and
-- facility energy as its table wrote them), to say what differs when it is recomputed.
create table issued_statements (
    id text primary key,
    digest bytea not null check (length(digest) = 32),
    issued_at timestamptz not null default now(),
    issued_by text,
    scope text not null,
    generated_at timestamptz not null,
    job_ids text[] not null,
    shown jsonb not null
);
