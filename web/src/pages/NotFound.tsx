import { Link } from "react-router";
import { Empty } from "../components/States";
import { PageHeader } from "../components/Layout";

export function NotFound() {
  return (
    <>
      <PageHeader title="Page not found" />
      <Empty title="There is nothing here." action={<Link className="btn" to="/">Back to the dashboard</Link>}>
        The address may be mistyped, or what it pointed to was deleted.
      </Empty>
    </>
  );
}
