-- Attachment bytes stored uncompressed (still out of line, TOAST): the API streams them in
-- chunks with substring(), which then reads only the chunk's pages instead of decompressing
-- the whole value for every chunk (api/src/download.rs). Documents are mostly PDFs, which are
-- compressed already. Applies to rows written from now on.
ALTER TABLE document_attachments ALTER COLUMN content SET STORAGE EXTERNAL;
