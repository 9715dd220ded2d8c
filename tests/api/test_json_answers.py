"""The hot views' shortcuts (asgi_app/views.py) answer exactly what DRF's machinery did."""

ACCEPTS = ("*/*", "application/json", "application/json, text/plain, */*")


async def test_enroll_and_list_answer_json_with_drf_headers(api, regular, create_course):
    # given a course and a regular user
    course = await create_course()
    # when they enroll, enroll again and list the courses
    first = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    repeat = await api.post(f"/api/courses/{course['id']}/enroll/", headers=regular[1])
    listed = await api.get("/api/courses/", headers=regular[1])
    # then each is JSON with the headers DRF's Response carried
    assert (first.status_code, repeat.status_code, listed.status_code) == (201, 200, 200)
    assert first.json() == repeat.json()
    assert listed.json()["results"][0]["id"] == course["id"]
    for response, allow in ((first, "POST, DELETE, OPTIONS"), (listed, "GET, POST, HEAD, OPTIONS")):
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Allow"] == allow
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_json_or_any_accept_header_gets_json(api, regular):
    # given each Accept header a JSON client sends, and none at all
    for accept in ACCEPTS:
        # when listing courses
        response = await api.get("/api/courses/", headers={**regular[1], "Accept": accept})
        # then the answer is JSON
        assert response.status_code == 200, accept
        assert response.headers["Content-Type"] == "application/json"


async def test_an_accept_header_without_json_is_still_refused(api, regular):
    # given a client that accepts only HTML
    headers = {**regular[1], "Accept": "text/html"}
    # when it lists courses
    response = await api.get("/api/courses/", headers=headers)
    # then DRF's negotiation answers 406, as before the shortcut
    assert response.status_code == 406
    assert response.headers["Content-Type"] == "application/json"


async def test_a_format_override_still_goes_through_negotiation(api, regular):
    # given a format suffix the API does not render
    # when a client asks for it with an Accept header the shortcut would take
    response = await api.get("/api/courses/?format=xml", headers={**regular[1], "Accept": "*/*"})
    # then DRF's negotiation decides (404 for an unknown format), not the shortcut
    assert response.status_code == 404
